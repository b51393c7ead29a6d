// Package e2e holds end-to-end tests that start real meshnode processes,
// on loopback and, as root, in separate network namespaces.
package e2e
