package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drainit/drainit/signals"
)

// usageError is bad input: drainit prints it on one line and exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef formats a usage error. Values quoted in it come from the user and
// may hold line breaks; escaping them keeps the message on one line.
func usagef(format string, a ...any) error {
	return &usageError{oneLine.Replace(fmt.Sprintf(format, a...))}
}

var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// options is a flag set whose every flag can also come from its DRAINIT_*
// variable; a flag given on the command line beats its variable.
type options struct {
	fs     *flag.FlagSet
	bad    error // the first bad value, named by flag or variable
	lookup lookupEnv
	lists  map[string]bool // flags whose variable holds a ':'-separated list
}

// lookupEnv reads the environment as os.LookupEnv does: a variable set to
// the empty string is set. Most options take it for unset all the same,
// so that a Kubernetes env entry templated to nothing leaves the default;
// the paths that an empty value turns off (value.emptyIsValue) do not.
type lookupEnv = func(string) (string, bool)

// getenvOf is lookup as os.Getenv: empty for unset.
func getenvOf(lookup lookupEnv) func(string) string {
	return func(k string) string {
		v, _ := lookup(k)
		return v
	}
}

func newOptions(name string, lookup lookupEnv) *options {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &options{fs: fs, lookup: lookup, lists: map[string]bool{}}
}

// envName is the variable that stands for a flag: grace-period → DRAINIT_GRACE_PERIOD.
func envName(flagName string) string {
	return "DRAINIT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// value wraps a parser so that its errors say which flag or variable held
// the bad value and what would have been accepted.
type value struct {
	o      *options
	name   string
	src    string // "--name" or "DRAINIT_NAME" while parsing
	set    func(string) error
	show   func() string
	isBool bool
	// defText stands for the default in --help where its value would say
	// nothing ("no limit" rather than 0s).
	defText string
	// given is set once a flag or its variable gave a value.
	given bool
	// emptyIsValue: the variable set to '' is the value '', as the flag
	// given '' is, not the variable unset.
	emptyIsValue bool
}

func (v *value) String() string {
	if v == nil || v.show == nil {
		return ""
	}
	return v.show()
}

func (v *value) Set(s string) error {
	if err := v.set(s); err != nil {
		if v.o.bad == nil {
			v.o.bad = usagef("%s=%q: %v", v.src, s, err)
		}
		return err
	}
	v.given = true
	return nil
}

func (v *value) IsBoolFlag() bool { return v.isBool }

func (o *options) add(name, help string, set func(string) error, show func() string) *value {
	v := &value{o: o, name: name, src: "--" + name, set: set, show: show}
	o.fs.Var(v, name, help)
	return v
}

func (o *options) duration(name string, dst *time.Duration, def time.Duration, min time.Duration, help string) *value {
	*dst = def
	return o.add(name, help, func(s string) error {
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		if d < min {
			switch min {
			case 0:
				return fmt.Errorf("must not be negative")
			case time.Nanosecond:
				return fmt.Errorf("must be more than 0")
			}
			return fmt.Errorf("must be at least %v", min)
		}
		*dst = d
		return nil
	}, func() string { return dst.String() })
}

func (o *options) boolean(name string, dst *bool, help string) {
	v := o.add(name, help, func(s string) error {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "1", "t", "true", "yes", "y", "on":
			*dst = true
		case "", "0", "f", "false", "no", "n", "off":
			*dst = false
		default:
			return fmt.Errorf("not a boolean; use true or false")
		}
		return nil
	}, func() string { return strconv.FormatBool(*dst) })
	v.isBool = true
}

func (o *options) signal(name string, dst *syscall.Signal, help string) *value {
	return o.add(name, help, func(s string) error {
		sig, err := signals.Parse(s)
		if err != nil {
			return fmt.Errorf("%v; use a name like TERM or SIGTERM, or a number like 15", err)
		}
		*dst = sig
		return nil
	}, func() string {
		if *dst == 0 {
			return ""
		}
		return signals.Name(*dst)
	})
}

func (o *options) drainSignals(name string, dst *[]syscall.Signal, def []syscall.Signal, help string) {
	*dst = def
	o.add(name, help, func(s string) error {
		list, err := signals.ParseList(s)
		if err != nil {
			return fmt.Errorf("%v; use names like TERM,INT", err)
		}
		for _, sig := range list {
			if err := signals.CanDrainOn(sig); err != nil {
				return fmt.Errorf("%v; drain on signals drainit can catch, like TERM,INT", err)
			}
		}
		*dst = list
		return nil
	}, func() string {
		var n []string
		for _, s := range *dst {
			n = append(n, signals.Name(s))
		}
		return strings.Join(n, ",")
	})
}

func (o *options) choice(name string, dst *string, def string, allowed []string, help string) {
	*dst = def
	o.add(name, help, func(s string) error {
		s = strings.ToLower(strings.TrimSpace(s))
		for _, a := range allowed {
			if s == a {
				*dst = s
				return nil
			}
		}
		return fmt.Errorf("use one of %s", strings.Join(allowed, ", "))
	}, func() string { return *dst })
}

// globs is repeatable on the command line; its variable is a ':'-separated list.
func (o *options) globs(name string, dst *[]string, help string) {
	o.lists[name] = true
	o.add(name, help, func(s string) error {
		p, err := checkGlob(s)
		if err != nil {
			return err
		}
		*dst = append(*dst, p)
		return nil
	}, func() string { return strings.Join(*dst, ":") })
}

// regexps is repeatable on the command line; its variable is a
// ':'-separated list, so an expression that needs a ':' is written \x3a.
func (o *options) regexps(name string, dst *[]*regexp.Regexp, help string) {
	o.lists[name] = true
	o.add(name, help, func(s string) error {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("empty expression: it would match every process; use one that names the job's command, like job\\.php")
		}
		re, err := regexp.Compile(s)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
			return fmt.Errorf("not a valid regular expression (%s); use Go's RE2 syntax, like 'php .*job\\.php'", msg)
		}
		*dst = append(*dst, re)
		return nil
	}, func() string {
		var s []string
		for _, re := range *dst {
			s = append(s, re.String())
		}
		return strings.Join(s, ":")
	})
}

// exitCodes is repeatable on the command line, each value a ','-separated
// list (143,130); its variable is a ':'-separated list and takes ',' too.
func (o *options) exitCodes(name string, dst *[]int, help string) {
	o.lists[name] = true
	o.add(name, help, func(s string) error {
		fields := strings.Split(s, ",")
		for _, f := range fields {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 || n > 255 {
				what := "not an exit code"
				if len(fields) > 1 {
					what = fmt.Sprintf("%q is not an exit code", f)
				}
				return fmt.Errorf("%s; use numbers from 0 to 255, like 143 or 143,130", what)
			}
			if !slices.Contains(*dst, n) {
				*dst = append(*dst, n)
			}
		}
		return nil
	}, func() string {
		s := make([]string, len(*dst))
		for i, n := range *dst {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s, ",")
	})
}

func (o *options) path(name string, dst *string, help string) *value {
	return o.add(name, help, func(s string) error {
		if s == "" {
			*dst = ""
			return nil
		}
		p, err := filepath.Abs(s)
		if err != nil {
			return err
		}
		*dst = p
		return nil
	}, func() string { return *dst })
}

// varName is the name of an environment variable.
func (o *options) varName(name string, dst *string, def string, help string) {
	*dst = def
	o.add(name, help, func(s string) error {
		if !validVarName(s) {
			return fmt.Errorf("not a variable name; use letters, digits and '_', like POD_NAME")
		}
		*dst = s
		return nil
	}, func() string { return *dst })
}

func validVarName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// checkGlob refuses patterns filepath.Match cannot read and makes the rest
// absolute, so that what is watched does not depend on a later chdir.
func checkGlob(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("empty lock pattern; use a glob like /app/lock/*.lock")
	}
	if _, err := filepath.Match(s, ""); err != nil {
		return "", fmt.Errorf("not a valid glob (%v); use shell-style patterns like /app/lock/*.lock", err)
	}
	p, err := filepath.Abs(s)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(s, "/") {
		return "", fmt.Errorf("names a directory; add the file pattern, like %s*.lock", s)
	}
	return p, nil
}

// parse reads the flags in args, then fills every flag that was not given
// from its variable. It returns the arguments after the flags.
func (o *options) parse(args []string) ([]string, error) {
	if err := o.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		if o.bad != nil {
			return nil, o.bad
		}
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
			return nil, usagef("unknown flag --%s; run %s --help for the list", strings.TrimLeft(name, "-"), o.fs.Name())
		}
		return nil, usagef("%s; run %s --help for the list of flags", msg, o.fs.Name())
	}
	given := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	o.fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		raw, set := o.lookup(env)
		v := f.Value.(*value)
		if given[f.Name] || !set || (raw == "" && !v.emptyIsValue) || err != nil {
			return
		}
		v.src = env
		parts := []string{raw}
		if o.lists[f.Name] {
			parts = strings.Split(raw, ":")
		}
		for _, p := range parts {
			if p == "" && len(parts) > 1 {
				continue // "a::b" or a trailing ':', as PATH allows
			}
			if v.Set(p) != nil {
				err = o.bad
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return o.fs.Args(), nil
}

// parseDuration takes Go's syntax (90s, 5m, 1h30m) or plain seconds (300,
// 2.5), because Kubernetes users count terminationGracePeriodSeconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration; use Go syntax like 90s or 5m, or plain seconds like 300")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("must not be negative")
		}
		// Compare in float64 before converting: the largest float below
		// 2^63 ns must not wrap around to a negative duration.
		ns := f * float64(time.Second)
		if ns != ns || ns >= 1<<63 {
			return 0, fmt.Errorf("too long")
		}
		return time.Duration(ns), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration; use Go syntax like 90s or 5m, or plain seconds like 300")
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return d, nil
}

// printDefaults writes the flag list for --help.
func (o *options) printDefaults(w io.Writer) {
	o.fs.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if v, ok := f.Value.(*value); ok && !v.isBool {
			name += " VALUE"
		}
		def := ""
		if v, ok := f.Value.(*value); ok && v.defText != "" {
			def = " (default " + v.defText + ")"
		} else if f.DefValue != "" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %-28s %s%s  [%s]\n", name, f.Usage, def, envName(f.Name))
	})
}
