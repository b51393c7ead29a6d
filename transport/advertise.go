package transport

import "net"

// AdvertiseAddr picks the address peers dial: advertise when set, else
// bind with an unspecified host replaced by the first non-loopback IPv4
// address (127.0.0.1 when there is none). An ephemeral port (0) is known
// only once bound: then it returns "".
func AdvertiseAddr(bind, advertise string) string {
	if advertise != "" {
		return advertise
	}
	host, port, _ := net.SplitHostPort(bind)
	if port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if a := firstNonLoopback(); a != "" {
			return net.JoinHostPort(a, port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return bind
}

func firstNonLoopback() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}
