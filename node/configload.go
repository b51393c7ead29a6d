package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that configures a node.
const EnvPrefix = "MESHNODE_"

// ConfigKeys lists every configuration key (the YAML names), sorted.
func ConfigKeys() []string {
	var keys []string
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		keys = append(keys, t.Field(i).Tag.Get("yaml"))
	}
	sort.Strings(keys)
	return keys
}

// EnvName is the environment variable for a configuration key.
func EnvName(key string) string { return EnvPrefix + strings.ToUpper(key) }

// LoadFile overlays the YAML file at path onto c. Unknown keys and values of
// the wrong type are errors naming the key.
func LoadFile(path string, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: config file: %v", ErrInvalidConfig, err)
	}
	// Decode into a generic map first so every key goes through the same
	// parser as flags and environment variables: one set of rules, one set
	// of error messages.
	var raw map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: config file %s: %v", ErrInvalidConfig, path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := SetKey(c, k, yamlValueString(raw[k])); err != nil {
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

// ApplyEnv overlays MESHNODE_* variables from environ (os.Environ format)
// onto c. A MESHNODE_ variable that names no key is an error, so a typo is
// caught instead of silently ignored. Variables only client commands read
// are skipped.
func ApplyEnv(environ []string, c *Config) error {
	known := map[string]string{}
	for _, k := range ConfigKeys() {
		known[EnvName(k)] = k
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if name == EnvPrefix+"CONFIG" {
			continue
		}
		key, ok := known[name]
		if !ok {
			return fmt.Errorf("%w: environment variable %s names no setting; known ones are %s", ErrInvalidConfig, name, strings.Join(envNames(), ", "))
		}
		if err := SetKey(c, key, value); err != nil {
			return fmt.Errorf("%w (from %s)", err, name)
		}
	}
	return nil
}

func envNames() []string {
	var out []string
	for _, k := range ConfigKeys() {
		out = append(out, EnvName(k))
	}
	return out
}

// SetKey parses value for the configuration key and stores it in c.
func SetKey(c *Config, key, value string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("yaml") != key {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(value)
		case bool:
			b, err := strconv.ParseBool(value)
			if err != nil {
				return invalid(key, "%q is not a boolean (use true or false)", value)
			}
			f.SetBool(b)
		case int:
			n, err := strconv.Atoi(value)
			if err != nil {
				return invalid(key, "%q is not an integer", value)
			}
			f.SetInt(int64(n))
		case time.Duration:
			d, err := time.ParseDuration(value)
			if err != nil {
				return invalid(key, "%q is not a duration (for example 30s or 5m)", value)
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
	return invalid(key, "unknown key; known keys are %s", strings.Join(ConfigKeys(), ", "))
}
