package auth

import "golang.org/x/sys/unix"

// lowerThreadPriority makes the calling OS thread yield to the process's other threads when the
// CPUs are contended (nice 10). On Linux a thread id names one thread, not the whole process.
func lowerThreadPriority() {
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10)
}
