// Package settings loads a configuration struct from the three places a
// daemon reads settings: a YAML file, MESHNODE_* environment variables and
// flags. Every key goes through one parser (SetKey), so a value means the
// same wherever it was written and every error names the key. The keys are
// the struct's `yaml` tags; the struct's own rules (ranges, cross-field
// checks) stay with its owner's Validate.
//
// It may import no other package of the product.
package settings
