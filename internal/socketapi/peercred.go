package socketapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerCred is the kernel's account of the process on the other end of a
// socket connection (SO_PEERCRED). It cannot be forged by the client, which
// is why agent ownership is bound to it.
type PeerCred struct {
	PID int32
	UID uint32
	GID uint32
}

// String renders the credentials for logs and error messages.
func (p PeerCred) String() string { return fmt.Sprintf("pid=%d uid=%d gid=%d", p.PID, p.UID, p.GID) }

func readPeerCred(c net.Conn) (PeerCred, error) {
	for {
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCred{}, fmt.Errorf("connection is %T, not a Unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCred{}, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, err
	}
	if serr != nil {
		return PeerCred{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return PeerCred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// peerCredAuthInfo carries PeerCred through grpc's credentials hook.
type peerCredAuthInfo struct {
	credentials.CommonAuthInfo
	cred PeerCred
}

func (peerCredAuthInfo) AuthType() string { return "peercred" }

// peerCredTransport is grpc TransportCredentials that add no encryption (the
// socket is local and protected by its file mode) but record SO_PEERCRED.
type peerCredTransport struct{}

func (peerCredTransport) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, peerCredAuthInfo{}, nil
}

func (peerCredTransport) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := readPeerCred(c)
	if err != nil {
		return nil, nil, err
	}
	return c, peerCredAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, cred: cred}, nil
}

func (peerCredTransport) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (t peerCredTransport) Clone() credentials.TransportCredentials { return t }
func (peerCredTransport) OverrideServerName(string) error           { return nil }

type peerCredKey struct{}

// withPeerCred stores credentials in a context (the HTTP/1.1 path, whose
// contexts vanguard passes through to the gRPC handlers).
func withPeerCred(ctx context.Context, c PeerCred) context.Context {
	return context.WithValue(ctx, peerCredKey{}, c)
}

// ErrNoPeerCred means a request arrived without kernel credentials.
var ErrNoPeerCred = errors.New("no peer credentials on this connection")

// PeerCredFromContext returns the calling process's credentials, from either
// the gRPC or the HTTP/1.1 path.
func PeerCredFromContext(ctx context.Context) (PeerCred, error) {
	if c, ok := ctx.Value(peerCredKey{}).(PeerCred); ok {
		return c, nil
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ai, ok := p.AuthInfo.(peerCredAuthInfo); ok {
			return ai.cred, nil
		}
	}
	return PeerCred{}, ErrNoPeerCred
}
