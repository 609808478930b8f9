//go:build !linux

package auth

// lowerThreadPriority is a no-op where threads cannot be given their own priority.
func lowerThreadPriority() {}
