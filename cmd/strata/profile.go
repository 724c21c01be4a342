package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// Profiling for the benchmark suite (tests/bench -profile DIR) and for
// anyone chasing a slow command: a CPU profile is written to the file
// named by STRATA_CPUPROFILE or the hidden --cpuprofile flag, a heap
// profile (taken at exit) to STRATA_MEMPROFILE or --memprofile. The
// environment variables start profiling in main, before flags are parsed,
// so nothing of the run is missed; the flags start it once they are
// parsed (the root command's PersistentPreRun).

var (
	// atExit runs, last added first, when main returns from run: os.Exit
	// skips deferred calls, and profiles must be flushed.
	atExit []func()

	profilingCPU, profilingMem bool
)

// startProfiles starts the CPU profile and arranges the heap profile; a
// profile already started is left alone. A profile that cannot be written
// is reported and skipped: it must not fail the command.
func startProfiles(cpu, mem string) {
	if cpu != "" && !profilingCPU {
		f, err := os.Create(cpu)
		if err != nil {
			fmt.Fprintf(os.Stderr, "strata: cpu profile: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "strata: cpu profile %s: %v\n", cpu, err)
			f.Close()
		} else {
			profilingCPU = true
			atExit = append(atExit, func() {
				pprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "strata: cpu profile %s: %v\n", cpu, err)
				}
			})
		}
	}
	if mem != "" && !profilingMem {
		profilingMem = true
		atExit = append(atExit, func() {
			f, err := os.Create(mem)
			if err != nil {
				fmt.Fprintf(os.Stderr, "strata: heap profile: %v\n", err)
				return
			}
			runtime.GC()
			if err := pprof.WriteHeapProfile(f); err != nil {
				fmt.Fprintf(os.Stderr, "strata: heap profile %s: %v\n", mem, err)
			}
			if err := f.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "strata: heap profile %s: %v\n", mem, err)
			}
		})
	}
}

// runAtExit runs the atExit hooks once.
func runAtExit() {
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	atExit = nil
}

// startTrace writes an execution trace (go tool trace) of the whole run
// to file: where the goroutines of a pipeline wait on each other.
func startTrace(file string) {
	if file == "" {
		return
	}
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata: trace: %v\n", err)
		return
	}
	if err := trace.Start(f); err != nil {
		fmt.Fprintf(os.Stderr, "strata: trace %s: %v\n", file, err)
		f.Close()
		return
	}
	atExit = append(atExit, func() {
		trace.Stop()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "strata: trace %s: %v\n", file, err)
		}
	})
}
