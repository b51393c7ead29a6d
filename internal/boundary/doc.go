// Package boundary holds the test that enforces the package boundaries of
// docs/architecture.md: which of the module's packages may not depend on
// which, directly or through others.
package boundary
