package procjobs

// CommandLine reads pid's command line as a scan does.
func CommandLine(pid int) (string, bool) {
	var s settle
	var buf [4096]byte
	return s.cmdline(buf[:], pid)
}
