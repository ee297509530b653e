//go:build !linux

package customauth

// residentBytes counts all of the memory, without mmap to ask about.
func residentBytes(mem []byte) (int64, error) { return int64(len(mem)), nil }
