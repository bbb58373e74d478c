package main_test

import "github.com/drainit/drainit/internal/benchapp"

// The benchmarks' app, the same as cmd/drainit-bench's: run in an init
// function, before TestMain, so that helper_test.go's switch stays as it
// is.
func init() { benchapp.Main() }
