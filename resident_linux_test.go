//go:build linux

package customauth

import (
	"os"
	"syscall"
	"unsafe"
)

// residentBytes is how much of mapped memory the kernel really holds for it: its
// pages in RAM (mincore(2)).
func residentBytes(mem []byte) (int64, error) {
	page := os.Getpagesize()
	vec := make([]byte, (len(mem)+page-1)/page)
	_, _, errno := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(mem))),
		uintptr(len(mem)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		return 0, errno
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n * int64(page), nil
}
