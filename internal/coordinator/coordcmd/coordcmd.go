// Package coordcmd is the coordinator's command line (cmd/coordinator is
// its main): flags, the configuration file, exit statuses, signals.
package coordcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/coordinator"
	"github.com/simgate/simgate/internal/durable"
	"github.com/simgate/simgate/internal/exitcode"
	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/version"
)

// configErrorStatus is the exit status for a configuration the
// coordinator cannot run with (exitcode.Config: 2, 78 under the unit).
func configErrorStatus() int { return exitcode.Config() }

// Run is the coordinator's command line: it parses args, loads the
// configuration and serves until SIGINT or SIGTERM; it returns the exit
// status.
func Run(args []string, stdout, stderr io.Writer) int {
	o, status, done := parse(args, stdout, stderr)
	if done {
		return status
	}
	return serve(o, stdout, stderr)
}

// options is what the command line says.
type options struct {
	cfg        config.Config
	check      bool
	checkMail  bool // -check -mail: try the mail server too
	listenFile string
}

// parse reads the flags and the configuration; done says the command is
// over (help, version, an error), with its status.
func parse(args []string, stdout, stderr io.Writer) (o options, status int, done bool) {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	check := fs.Bool("check", false, "check the configuration, print every warning and exit: 0 clean, 1 warnings, 2 errors")
	checkMail := fs.Bool("mail", false, "with -check: connect to the mail server as a mail would, up to AUTH, and say whether its TLS certificate verifies (a failure is a warning)")
	port := fs.Int("port", 0, "HTTP port, in place of the file's \"port\" (0: any free port; default 1999)")
	natsListen := fs.String("nats-listen", "", "host:port of the embedded NATS server, in place of the file's nats.listen (default 127.0.0.1:4222)")
	listenFile := fs.String("listen-file", "", "once serving, write the ports bound (JSON: httpPort, natsURL, natsPort) to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: coordinator [flags] [CONFIG.json]

simgate's session server. Without CONFIG.json it serves on localhost:1999 with
one simulation server, localhost:2000, measured by an in-process agent.
Configuration keys are listed in the README.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, 0, true
		}
		return o, 2, true
	}
	if *showVersion {
		fmt.Fprintln(stdout, "simgate coordinator", version.String())
		return o, 0, true
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "coordinator: too many arguments: give one configuration file")
		return o, configErrorStatus(), true
	}
	cfg := config.Localhost()
	if fs.NArg() == 1 {
		var err error
		if cfg, err = config.Load(fs.Arg(0)); err != nil {
			fmt.Fprintln(stderr, "coordinator:", err)
			return o, configErrorStatus(), true
		}
	}
	var portSet *int
	var natsSet *string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "port":
			portSet = port
		case "nats-listen":
			natsSet = natsListen
		}
	})
	if err := cfg.OverrideListen(portSet, natsSet); err != nil {
		fmt.Fprintln(stderr, "coordinator:", err)
		return o, configErrorStatus(), true
	}
	// Warnings go to standard error at once (the log may be a file nobody
	// reads yet) and to the log when it starts.
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "coordinator: warning:", w)
	}
	return options{cfg: cfg, check: *check, checkMail: *checkMail, listenFile: *listenFile}, 0, false
}

// serve checks or runs the coordinator o says.
func serve(o options, stdout, stderr io.Writer) int {
	cfg, listenFile := o.cfg, &o.listenFile
	if o.check {
		warnings := len(cfg.Warnings)
		if o.checkMail {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			line, ok := coordinator.CheckMail(ctx, cfg)
			cancel()
			if ok {
				fmt.Fprintln(stdout, "mail:", line)
			} else {
				fmt.Fprintln(stderr, "coordinator: warning: mail:", line)
				warnings++
			}
		}
		if warnings > 0 {
			fmt.Fprintf(stdout, "configuration usable, with %d warning(s)\n", warnings)
			return 1
		}
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	log := logging.Stdout(slog.LevelInfo)
	if !cfg.Debug {
		dir := filepath.Join(cfg.LogDir, "session")
		l, closer, err := logging.File(dir, slog.LevelInfo)
		if err != nil {
			fmt.Fprintln(stderr, "coordinator:", err)
			return 1
		}
		defer closer.Close()
		log = l
		fmt.Fprintf(stderr, "coordinator: logging to %s\n", filepath.Join(dir, "output.log"))
	}
	// Signals are caught before anything starts: a SIGTERM that comes as
	// soon as the coordinator says it serves (the listen file) must stop it
	// gracefully, not kill it by the default action.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	h := newHandover(log)
	h.catchReady()
	defer h.stop()
	ln, err := h.listen(cfg.Port)
	if err == nil {
		if h.replaces() {
			log.Info("reload: taking over from the previous process")
		}
		err = h.ready() // the previous process lets go of NATS and the store
	}
	var c *coordinator.Coordinator
	if err == nil {
		c, err = coordinator.StartFrom(cfg, log, coordinator.Inherited{HTTP: ln, Parent: h.replaces()})
	}
	if err != nil {
		log.Error("cannot start", "error", err)
		fmt.Fprintln(stderr, "coordinator:", err)
		return 1
	}
	if *listenFile != "" {
		if err := writeListenFile(*listenFile, c.Listening()); err != nil {
			log.Error("cannot write the listen file", "error", err)
			fmt.Fprintln(stderr, "coordinator:", err)
			c.Stop(context.Background())
			return 1
		}
	}
	notifyReady(log)
	if h.replaces() {
		go h.tellParent(ctx, c.Opened())
	}
	for {
		select {
		case <-hup:
			go h.upgrade()
		case <-h.exit():
			log.Info("reload: the new process serves; handing over")
			c.Yield(ctx, h.nextReady()) // until the sessions relayed here end, or SIGTERM
			return 0
		case <-ctx.Done():
			log.Info("stopping on signal")
			c.Stop(context.Background())
			return 0
		}
	}
}

// writeListenFile writes what the coordinator bound (Listening) as JSON
// to path, atomically: a reader sees no file or the whole file.
func writeListenFile(path string, l coordinator.Listening) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := durable.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the listen file: %w", err)
	}
	return nil
}
