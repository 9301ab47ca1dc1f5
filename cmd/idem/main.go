// Command idem is the operator's tool for idem stores: it lists and shows
// keys, reports usage, collects expired records, deletes keys, and
// measures throughput.
//
//	idem dump   [-dir DIR | -url URL] [filters] [-json]
//	idem get    [-dir DIR | -url URL] -scope S [-tenant T] KEY
//	idem stats  [-dir DIR | -url URL] [-json]
//	idem gc     [-dir DIR | -url URL]
//	idem delete [-dir DIR | -url URL] -scope S [-tenant T] KEY
//	idem bench  [-workload W] [-goroutines N] [-duration D] [-json]
//	idem torture [-rounds N] [-keys N] [-goroutines N] [-sync]
//	idem version
//
// -dir opens a stopped store (one whose process was killed too) without
// changing a byte of it; a store in use by a running process is reached
// through that process's admin handler with -url (see
// idem.Store.AdminHandler). Output with -json names every field in
// snake_case and gives durations in seconds (duration_seconds). Exit codes:
// 0 ok, 1 runtime error, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

func main() {
	if runTortureChildFromEnv() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func exitCode(err error, stderr io.Writer) int {
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, message(err))
		fmt.Fprintln(stderr, "run 'idem -h' for usage")
		return 2
	default:
		fmt.Fprintln(stderr, message(err))
		return 1
	}
}

// message prefixes err with the command's name, unless the library did.
func message(err error) string {
	if s := err.Error(); strings.HasPrefix(s, "idem: ") {
		return s
	}
	return "idem: " + err.Error()
}

// command is one subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dump", "list records, one per line", runDump},
		{"get", "show one record in full", runGet},
		{"stats", "usage per scope, states, expiry histogram, disk", runStats},
		{"gc", "delete expired records and reclaim disk space", runGC},
		{"delete", "delete one record", runDelete},
		{"bench", "measure check-and-set throughput against baselines", runBench},
		{"torture", "kill a writing process again and again, and check nothing is lost", runTorture},
		{"version", "print the version", runVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, "usage: idem COMMAND [flags]; idem COMMAND -h for a command's flags")
		for _, c := range commands() {
			fmt.Fprintf(stdout, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stdout, "\n-dir opens a stopped store; -url reaches a running one through its admin handler.\n-json output uses snake_case names and durations in seconds. Exit status: 0 ok, 1 error, 2 usage.")
		if len(args) == 0 {
			return usagef("no command")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	return usagef("unknown command %q", args[0])
}

// newFlags makes a command's flag set, printing its usage with examples.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
