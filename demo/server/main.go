// Command server is the custom_auth demo in one process: Caddy with custom_auth running
// Caddyfile.example (the gateway, the stand-in identity API and the demo page), and the
// chat backend behind the gateway, which keeps contacts in SQLite with contactstore.
// `go run ./demo` builds and starts it.
//
// It is a program of its own module, so that neither the chat backend nor SQLite reach
// the plugin's go.mod or a production build of Caddy.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/custom-auth/custom_auth"
	"github.com/custom-auth/custom_auth/contact"
	"github.com/custom-auth/custom_auth/contactstore"
)

// The demo's sign_key in Caddyfile.example, with which the backend verifies the
// assertion.
const demoSignKey = "demo-signing-key-0123456789abcdef"

func main() {
	config := flag.String("config", "Caddyfile.example", "the Caddyfile to run")
	db := flag.String("db", filepath.Join(os.TempDir(), "custom_auth-demo", "contacts.db"), "the SQLite file of the chat backend")
	backend := flag.String("backend", "127.0.0.1:9002", "where the chat backend listens: the gateway's reverse_proxy")
	logs := flag.String("logs", "", "where Caddy's logs go, to say so (they go to stderr)")
	flag.Parse()
	if err := run(*config, *db, *backend, *logs); err != nil {
		fmt.Println("custom_auth demo:", err)
		os.Exit(1)
	}
}

func run(configFile, dbFile, backendAddr, logs string) error {
	config, err := adapt(configFile)
	if err != nil {
		return err
	}
	// Caddy listens with SO_REUSEPORT, so a second demo would share the ports and split
	// the traffic; a plain listen fails instead when the first one runs.
	backendListener, err := net.Listen("tcp", backendAddr)
	if err != nil {
		return inUse(backendAddr, err)
	}
	defer backendListener.Close()
	if err := checkFree(config); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(filepath.Dir(dbFile), 0o700); err != nil {
		return err
	}
	store, err := contactstore.OpenSQLite(ctx, dbFile)
	if err != nil {
		return err
	}
	defer store.Close()
	verifier, err := contact.NewHMACVerifier([]byte(demoSignKey))
	if err != nil {
		return err
	}
	backend := &chatBackend{store: store, reader: &contactstore.Reader{Verifier: verifier}, log: slog.Default()}
	server := &http.Server{Handler: backend.routes()}
	go server.Serve(backendListener)
	defer server.Close()

	if err := caddy.Load(config, false); err != nil {
		return fmt.Errorf("starting Caddy with %s: %w", configFile, err)
	}
	defer caddy.Stop()
	fmt.Println(readyLine(config, logs))
	<-ctx.Done()
	return nil
}

// adapt reads a Caddyfile into Caddy's JSON.
func adapt(file string) ([]byte, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w (run the demo from the repository's root)", err)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	config, warnings, err := adapter.Adapt(body, map[string]any{"filename": file})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for _, w := range warnings {
		slog.Warn("Caddyfile", "file", w.File, "line", w.Line, "warning", w.Message)
	}
	return config, nil
}

// listenConfig is the part of Caddy's JSON that says where it listens.
type listenConfig struct {
	Admin *struct {
		Disabled bool   `json:"disabled"`
		Listen   string `json:"listen"`
	} `json:"admin"`
	Apps struct {
		HTTP struct {
			Servers map[string]struct {
				Listen []string `json:"listen"`
			} `json:"servers"`
		} `json:"http"`
	} `json:"apps"`
}

// addresses returns every TCP address the config listens on.
func addresses(config []byte) ([]string, error) {
	var c listenConfig
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, err
	}
	var listen []string
	if c.Admin == nil || !c.Admin.Disabled {
		admin := caddy.DefaultAdminListen
		if c.Admin != nil && c.Admin.Listen != "" {
			admin = c.Admin.Listen
		}
		listen = append(listen, admin)
	}
	for _, s := range c.Apps.HTTP.Servers {
		listen = append(listen, s.Listen...)
	}
	var addrs []string
	for _, l := range listen {
		na, err := caddy.ParseNetworkAddress(l)
		if err != nil {
			return nil, err
		}
		for port := range na.PortRangeSize() {
			addrs = append(addrs, na.JoinHostPort(port))
		}
	}
	return addrs, nil
}

// checkFree listens on each of the config's addresses and lets go again.
func checkFree(config []byte) error {
	addrs, err := addresses(config)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return inUse(addr, err)
		}
		l.Close()
	}
	return nil
}

func inUse(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is in use: is the demo already running? Stop it (Ctrl-C where it runs) and start it again", addr)
	}
	return fmt.Errorf("cannot listen on %s: %w", addr, err)
}

// readyLine is the one line the demo prints: the pages to open, the sites of the
// config whose hosts are under .localhost, which browsers resolve to this machine.
func readyLine(config []byte, logs string) string {
	var c struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []struct {
						Match []struct {
							Host []string `json:"host"`
						} `json:"match"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	json.Unmarshal(config, &c) // read before by addresses
	var pages []string
	for _, s := range c.Apps.HTTP.Servers {
		if len(s.Listen) != 1 {
			continue
		}
		na, err := caddy.ParseNetworkAddress(s.Listen[0])
		if err != nil {
			continue
		}
		for _, r := range s.Routes {
			for _, m := range r.Match {
				for _, host := range m.Host {
					if strings.HasSuffix(host, ".localhost") {
						pages = append(pages, fmt.Sprintf("http://%s:%d", host, na.StartPort))
					}
				}
			}
		}
	}
	line := "custom_auth demo running: open " + strings.Join(pages, " and ") +
		" (shop is on the bot's whitelist, evil is not); Ctrl-C stops it."
	if logs != "" {
		line += " Caddy's logs: " + logs
	}
	return line
}
