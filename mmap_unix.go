//go:build unix

package customauth

import "syscall"

// mapMemory returns n bytes of zeroed memory mapped from the kernel, outside the Go
// heap: the collector neither scans nor counts it, and the kernel gives a page only
// when it is first written, so the memory costs RSS only as it fills.
func mapMemory(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// unmapMemory gives memory from mapMemory back to the kernel.
func unmapMemory(mem []byte) error {
	return syscall.Munmap(mem)
}

// dropPages gives the pages of a part of mapped memory back to the kernel; they read
// as zeroes the next time.
func dropPages(mem []byte) {
	_ = syscall.Madvise(mem, syscall.MADV_DONTNEED)
}
