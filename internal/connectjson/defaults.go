package connectjson

import "net/http"

// Defaults treats a POST of JSON or proto to /<package.Service>/<Method> as
// Connect unary even without the Connect-Protocol-Version header, so a plain
// `curl -H 'Content-Type: application/json' -d '{}'` works. (vanguard would
// otherwise take it for a REST call and answer 404.)
func Defaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" {
			switch r.Header.Get("Content-Type") {
			case "application/json", "application/proto":
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		next.ServeHTTP(w, r)
	})
}
