package settings

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid wraps every error about a key or value; callers exit with the
// usage status when they see it.
var ErrInvalid = errors.New("invalid configuration")

// Invalid returns an ErrInvalid that names key.
func Invalid(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...))
}

// Keys lists the yaml keys of the struct cfg points to, sorted.
func Keys(cfg any) []string {
	var keys []string
	t := reflect.TypeOf(cfg).Elem()
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("yaml"); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// EnvName is the environment variable for key under prefix.
func EnvName(prefix, key string) string { return prefix + strings.ToUpper(key) }

// LoadFile overlays the YAML file at path onto the struct cfg points to.
// Unknown keys and values of the wrong type are errors naming the key.
func LoadFile(path string, cfg any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: config file: %v", ErrInvalid, err)
	}
	// Decode into a generic map first so every key goes through the same
	// parser as flags and environment variables: one set of rules, one set
	// of error messages.
	var raw map[string]any
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: config file %s: %v", ErrInvalid, path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := SetKey(cfg, k, yamlValueString(raw[k])); err != nil {
			return fmt.Errorf("%w (in %s)", err, path)
		}
	}
	return nil
}

func yamlValueString(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// ApplyEnv overlays the variables of environ (os.Environ format) that start
// with prefix onto cfg. One that names no key is an error, so a typo is
// caught instead of silently ignored; the names in skip are read elsewhere
// (by client commands) and passed over.
func ApplyEnv(environ []string, prefix string, cfg any, skip ...string) error {
	known := map[string]string{}
	var names []string
	for _, k := range Keys(cfg) {
		known[EnvName(prefix, k)] = k
		names = append(names, EnvName(prefix, k))
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, prefix) || contains(skip, name) {
			continue
		}
		key, ok := known[name]
		if !ok {
			return fmt.Errorf("%w: environment variable %s names no setting; known ones are %s", ErrInvalid, name, strings.Join(names, ", "))
		}
		if err := SetKey(cfg, key, value); err != nil {
			return fmt.Errorf("%w (from %s)", err, name)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// SetKey parses value for key and stores it in the struct cfg points to.
func SetKey(cfg any, key, value string) error {
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("yaml") != key {
			continue
		}
		return setField(v.Field(i), key, value)
	}
	return Invalid(key, "unknown key; known keys are %s", strings.Join(Keys(cfg), ", "))
}

func setField(f reflect.Value, key, value string) error {
	switch f.Interface().(type) {
	case string:
		f.SetString(value)
	case bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return Invalid(key, "%q is not a boolean (use true or false)", value)
		}
		f.SetBool(b)
	case int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return Invalid(key, "%q is not an integer", value)
		}
		f.SetInt(int64(n))
	case time.Duration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return Invalid(key, "%q is not a duration (for example 30s or 5m)", value)
		}
		f.SetInt(int64(d))
	case []string:
		var list []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("config key %s has unsupported type %s", key, f.Type())
	}
	return nil
}

// HostPort checks a host:port setting: a host, and a port in 1-65535 (0
// too when allowZeroPort: an ephemeral port for a listener).
func HostPort(s string, allowZeroPort bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !allowZeroPort) {
		return fmt.Errorf("%q has an invalid port", s)
	}
	return nil
}
