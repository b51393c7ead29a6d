package node

import "github.com/agentmesh/meshnode/internal/settings"

// EnvPrefix starts every environment variable that configures a node.
const EnvPrefix = "MESHNODE_"

// ConfigKeys lists every configuration key (the YAML names), sorted.
func ConfigKeys() []string { return settings.Keys(&Config{}) }

// EnvName is the environment variable for a configuration key.
func EnvName(key string) string { return settings.EnvName(EnvPrefix, key) }

// LoadFile overlays the YAML file at path onto c. Unknown keys and values of
// the wrong type are errors naming the key.
func LoadFile(path string, c *Config) error { return settings.LoadFile(path, c) }

// ApplyEnv overlays MESHNODE_* variables from environ (os.Environ format)
// onto c. A MESHNODE_ variable that names no key is an error; MESHNODE_CONFIG
// names the file and is read by the command.
func ApplyEnv(environ []string, c *Config) error {
	return settings.ApplyEnv(environ, EnvPrefix, c, EnvPrefix+"CONFIG")
}

// SetKey parses value for the configuration key and stores it in c.
func SetKey(c *Config, key, value string) error { return settings.SetKey(c, key, value) }
