package contactstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// eachStore runs test against a fresh store in a real SQLite file and, when PostgreSQL
// is installed, in a real PostgreSQL server (one cluster for the test binary, one
// database per call).
func eachStore(t *testing.T, test func(t *testing.T, s *Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "contacts.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := postgresDatabase(t)
		s, err := OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
}

// The PostgreSQL server of the test binary, started by the first test that needs it and
// stopped by TestMain.
var postgres struct {
	dir, port string
	stop      func()
	err       error
	databases int
}

func TestMain(m *testing.M) {
	code := m.Run()
	if postgres.stop != nil {
		postgres.stop()
	}
	os.Exit(code)
}

// postgresDatabase creates a database for the test and returns its DSN. Without
// PostgreSQL the test is skipped, except under CI=true, where it fails.
func postgresDatabase(t *testing.T) string {
	t.Helper()
	if postgres.dir == "" && postgres.err == nil {
		postgres.err = startPostgres()
	}
	if postgres.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(postgres.err)
		}
		t.Skip(postgres.err)
	}
	postgres.databases++
	name := "t" + strconv.Itoa(postgres.databases)
	if out, err := pgCommand("createdb", "-h", "127.0.0.1", "-p", postgres.port, "-U", "test", name).CombinedOutput(); err != nil {
		t.Fatalf("createdb: %v\n%s", err, out)
	}
	return fmt.Sprintf("postgres://test@127.0.0.1:%s/%s?sslmode=disable", postgres.port, name)
}

// startPostgres makes a cluster in a temporary folder and starts a server on a free
// loopback port. PostgreSQL refuses to run as root, so as root it runs as the postgres
// user that Debian's package creates.
func startPostgres() error {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return fmt.Errorf("PostgreSQL not found (/usr/lib/postgresql/*/bin/initdb); install it with: apt-get install -y postgresql")
	}
	pgBin = filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "contactstore-pg-")
	if err != nil {
		return err
	}
	if err := chownToPostgres(dir); err != nil {
		os.RemoveAll(dir)
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	data := filepath.Join(dir, "data")
	steps := [][]string{
		{"initdb", "-D", data, "-A", "trust", "-U", "test", "--no-sync"},
		{"pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o",
			"-c listen_addresses=127.0.0.1 -p " + port + " -k " + dir + " -c fsync=off", "start"},
	}
	for _, step := range steps {
		if out, err := pgCommand(step[0], step[1:]...).CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			os.RemoveAll(dir)
			return fmt.Errorf("%s: %v\n%s\n%s", step[0], err, out, log)
		}
	}
	postgres.dir, postgres.port = dir, port
	postgres.stop = func() {
		pgCommand("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop").Run()
		os.RemoveAll(dir)
	}
	return nil
}

var pgBin string

// pgCommand runs a PostgreSQL program, as the postgres user when the test runs as root.
func pgCommand(name string, args ...string) *exec.Cmd {
	path := filepath.Join(pgBin, name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func chownToPostgres(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}
