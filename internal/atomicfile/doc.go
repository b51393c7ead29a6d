// Package atomicfile is the product's one way to write a file that must
// never be seen half-written: keys, certificates, anything a crash or a
// concurrent reader must find either as it was or complete.
//
// A file is written to a temporary file in the same directory (so the final
// rename stays on one file system), given its mode before any byte is
// written (a key is never readable by others, even for a moment), fsynced,
// renamed (Write) or hard-linked (Create) into place, and then the
// directory is fsynced so the new name survives a crash too.
//
// It imports nothing of the product, so every package (agent included) may
// use it; callers create the directory with the mode they want first.
package atomicfile
