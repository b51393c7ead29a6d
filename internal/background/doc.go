// Package background runs one component's background loops and stops them
// together. Each node component gets its own Group when it starts and the
// node stops that Group just before it stops the component, so a loop never
// outlives what it uses and no component stops another's loops.
//
// It may import only internal/clock.
package background
