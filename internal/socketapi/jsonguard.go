package socketapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// MaxJSONDepth is how deeply a Connect JSON request may nest objects and
// arrays. protojson's own limit is 10,000; nothing in the agent API nests
// past a dozen, so a body deeper than this is refused before it is decoded.
const MaxJSONDepth = 100

// jsonGuard checks a Connect unary JSON request before vanguard sees it,
// because what goes wrong past this point is reported as the server's
// fault: grpc-go answers a body its codec cannot decode with internal (HTTP
// 500), and vanguard answers a body over its buffer limit with unavailable
// (HTTP 503), which tells clients to retry the same request. Here a body
// over maxMessage is resource_exhausted (HTTP 429) naming the limit, and
// one that is not UTF-8, nests too deep, is not JSON, or does not fit the
// method's request message is invalid_argument (HTTP 400) saying which.
//
// Only unary Connect JSON (a POST of application/json, as curl sends it) is
// decoded here; streams and compressed bodies go on unchecked, limited by
// vanguard's buffer. The body is read once and replayed to vanguard.
func jsonGuard(maxMessage int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		input := unaryJSONInput(r)
		if input == nil {
			next.ServeHTTP(w, r)
			return
		}
		tooBig := func() {
			writeConnectError(w, http.StatusTooManyRequests, "resource_exhausted",
				fmt.Sprintf("request body is over this node's max message size (%d bytes); send a smaller request", maxMessage))
		}
		if r.ContentLength > int64(maxMessage) {
			tooBig()
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(maxMessage)+1))
		if err != nil {
			writeConnectError(w, http.StatusBadRequest, "invalid_argument", "reading request body: "+err.Error())
			return
		}
		if len(body) > maxMessage {
			tooBig()
			return
		}
		if len(bytes.TrimSpace(body)) == 0 {
			// `curl -X POST` with no -d: the empty request, not a decode error.
			body = []byte("{}")
		}
		if msg := checkJSON(body, input); msg != "" {
			writeConnectError(w, http.StatusBadRequest, "invalid_argument", msg)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// unaryJSONInput returns the request message type of a Connect unary JSON
// call, or nil if r is anything else (which the guard leaves alone).
func unaryJSONInput(r *http.Request) protoreflect.MessageType {
	if r.Method != http.MethodPost {
		return nil
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil
	}
	service, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil || md.IsStreamingClient() || md.IsStreamingServer() {
		return nil
	}
	t, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil
	}
	return t
}

// checkJSON says what is wrong with body as a JSON encoding of input, or ""
// if nothing is. The checks run cheapest first; the last one decodes with
// the options the socket's codec uses, so what passes here decodes there.
func checkJSON(body []byte, input protoreflect.MessageType) string {
	if i := invalidUTF8(body); i >= 0 {
		return "request body is not valid UTF-8 (at byte " + strconv.Itoa(i) + "); JSON must be UTF-8"
	}
	if depth, at := nesting(body); depth > MaxJSONDepth {
		return fmt.Sprintf("request JSON nests deeper than %d levels (at byte %d); flatten it", MaxJSONDepth, at)
	}
	if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
		if se, ok := err.(*json.SyntaxError); ok {
			return fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return "request body is not valid JSON: " + err.Error()
	}
	msg := input.New().Interface()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, msg); err != nil {
		return fmt.Sprintf("request body is not a %s: %s", input.Descriptor().FullName(), strings.TrimLeftFunc(strings.TrimPrefix(err.Error(), "proto:"), unicode.IsSpace))
	}
	return ""
}

// invalidUTF8 is the offset of the first byte that is not UTF-8, or -1.
func invalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// nesting returns how deep body nests objects and arrays outside strings,
// stopping at the first level over MaxJSONDepth (and where it was).
func nesting(body []byte) (depth, at int) {
	var inString, escaped bool
	cur := 0
	for i, c := range body {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			cur++
			if cur > MaxJSONDepth {
				return cur, i
			}
		case c == '}' || c == ']':
			cur--
		}
		depth = max(depth, cur)
	}
	return depth, 0
}

// writeConnectError answers with a Connect unary error.
func writeConnectError(w http.ResponseWriter, httpStatus int, code, message string) {
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(httpStatus)
	w.Write(b)
}
