// Package clock is the product's one source of time: the Clock interface
// every package's Config takes, System (the wall clock) and Fake (time a
// test moves by hand).
//
// It owns nothing else and imports nothing of the product, so every
// package may depend on it.
package clock
