package contactstore

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

// The flows of docs/backend.md for teams not on Go, run on the assertions the gateway
// signs, in the same scenario; the database they leave is then read with this package.
var docsFlows = []struct {
	name, file string
	tool       string
	// harness runs the file's flow: the SQLite file and the key as arguments, the
	// scenario on stdin, the outcomes as a JSON list on stdout.
	harness []string
}{
	{"Python", "backend.py", "python3", []string{"python3", "-c", `
import json, sys
sys.path.insert(0, ".")
import backend
db = backend.open_db(sys.argv[1])
outcomes = []
for step in json.load(sys.stdin):
    if "lead" in step:
        backend.save_lead(db, *step["lead"])
        outcomes.append("lead")
    else:
        outcomes.append(backend.handle(db, sys.argv[2].encode(), step["headers"]))
print(json.dumps(outcomes))
`}},
	{"Node.js", "backend.mjs", "node", []string{"node", "--input-type=module", "-e", `
import fs from "node:fs";
import initSqlJs from "sql.js";
import { SCHEMA, handle, saveLead } from "./backend.mjs";
const [file, key] = process.argv.slice(1);
const SQL = await initSqlJs();
const db = new SQL.Database();
db.exec(SCHEMA);
const outcomes = [];
for (const step of JSON.parse(fs.readFileSync(0, "utf8"))) {
  if (step.lead) {
    saveLead(db, ...step.lead);
    outcomes.push("lead");
  } else {
    const headers = Object.fromEntries(Object.entries(step.headers).map(([k, v]) => [k.toLowerCase(), v]));
    outcomes.push(handle(db, key, headers));
  }
}
fs.writeFileSync(file, db.export());
console.log(JSON.stringify(outcomes));
`}},
}

// TestDocsFlows runs the Python and Node.js flows of docs/backend.md and checks that the
// page shows them as they are.
func TestDocsFlows(t *testing.T) {
	page, err := os.ReadFile("../docs/backend.md")
	if err != nil {
		t.Fatal(err)
	}
	steps, want := docsScenario(t)
	for _, flow := range docsFlows {
		t.Run(flow.name, func(t *testing.T) {
			source, err := os.ReadFile(filepath.Join("../docs/backend", flow.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(page, source) {
				t.Errorf("docs/backend.md does not show docs/backend/%s as it is", flow.file)
			}
			if _, err := exec.LookPath(flow.tool); err != nil {
				missingTool(t, flow.tool+" not found")
			}
			if flow.tool == "node" {
				if _, err := os.Stat("../docs/backend/node_modules/sql.js"); err != nil {
					missingTool(t, "sql.js is not installed: npm ci --prefix docs/backend")
				}
			}
			db := filepath.Join(t.TempDir(), "contacts.db")
			args := append(slices.Clone(flow.harness[1:]), db, string(docsKey))
			cmd := exec.Command(flow.harness[0], args...)
			cmd.Dir = "../docs/backend"
			cmd.Stdin = bytes.NewReader(steps)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", flow.file, err, stderr.String())
			}
			var got []string
			if err := json.Unmarshal(out, &got); err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: outcomes %s (%v), want %q", flow.file, out, err, want)
			}
			checkDocsDatabase(t, db)
		})
	}
}

func missingTool(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

var docsKey = []byte("demo-signing-key-0123456789abcdef")

// docsScenario is a list of requests as the gateway sends them, and the outcomes the
// flows must report.
func docsScenario(t *testing.T) ([]byte, []string) {
	t.Helper()
	signer, err := contact.NewHMACSigner(docsKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	signed := func(bot, identifyBy, data string, iat time.Time) map[string]any {
		token, err := signer.Sign(bot, "", identifyBy, []byte(data), iat, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"headers": map[string]string{"X-Bot-Id": bot, "X-Contact-Assertion": token}}
	}
	const b = `{"id":"2","name":"B","email":"b@example.com","metadata":{"order_id":"ORD-1","coupon":"X"}}`
	const c = `{"id":"2","name":"C","metadata":{"coupon":null}}`
	forged := signed("shop", "id", b, now)
	forged["headers"].(map[string]string)["X-Bot-Id"] = "other-shop"
	steps := []struct {
		step any
		want string
	}{
		{signed("shop", "id", b, now.Add(-3*time.Minute)), "created"},
		{signed("shop", "id", c, now.Add(-2*time.Minute)), "updated"},
		{signed("shop", "id", c, now.Add(-1*time.Minute)), "unchanged"},
		{signed("shop", "id", b, now.Add(-90*time.Second)), "unchanged"}, // older than the last
		{signed("other-shop", "id", b, now), "created"},
		{signed("shop", "email", `{"email":"B@Example.com","name":"B"}`, now), "created"},
		{signed("shop", "email", `{"email":"b@example.COM","name":"B"}`, now), "updated"},
		{map[string]any{"lead": []string{"shop", "visitor-1", "Mallory", "b@example.com"}}, "lead"},
		{forged, "anonymous"}, // another bot's assertion
		{map[string]any{"headers": map[string]string{"X-Bot-Id": "shop", "X-Contact-Id": "2"}}, "anonymous"},
	}
	var list []any
	var want []string
	for _, s := range steps {
		list = append(list, s.step)
		want = append(want, s.want)
	}
	encoded, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	return encoded, want
}

// checkDocsDatabase reads what a flow stored with this package: the same tables, the
// same contacts.
func checkDocsDatabase(t *testing.T, file string) {
	t.Helper()
	s, err := OpenSQLite(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := countContacts(t, s); n != 3 {
		t.Errorf("%d contacts, want 3 (shop's id 2, other-shop's id 2, shop's email)", n)
	}
	res, err := s.Save(context.Background(), Seen{Bot: "shop", Contact: &contact.Contact{ID: "2", IdentifyBy: "id"}, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Contact
	if res.Outcome != Unchanged || got.Name != "C" || got.Email != "b@example.com" || len(got.Metadata) != 1 || got.Metadata["order_id"] != "ORD-1" {
		t.Errorf("shop's contact 2: %s %+v, want unchanged, named C, email kept, metadata {order_id: ORD-1}", res.Outcome, got)
	}
	lead, ok, err := s.FindLead(context.Background(), "shop", "visitor-1")
	if err != nil || !ok || lead.Name != "Mallory" {
		t.Errorf("the lead: %+v %v %v, want Mallory's", lead, ok, err)
	}
	var name string
	if err := s.DB().QueryRow(`SELECT name FROM contacts WHERE bot_id = 'shop' AND identify_by = 'email'`).Scan(&name); err != nil || name != "B" {
		t.Errorf("the contact of b@example.com is named %q (%v), want B: a lead changes no contact", name, err)
	}
}

// TestDocsGo checks that docs/backend.md shows the handler of Example as it is.
func TestDocsGo(t *testing.T) {
	page, err := os.ReadFile("../docs/backend.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, handler, _ := strings.Cut(string(example), "// backend:start\n")
	handler, _, _ = strings.Cut(handler, "\t// backend:end")
	lines := strings.Split(handler, "\n")
	for i, line := range lines {
		lines[i] = strings.TrimPrefix(line, "\t")
	}
	if handler == "" || !strings.Contains(string(page), "```go\n"+strings.Join(lines, "\n")+"```") {
		t.Errorf("docs/backend.md does not show Example's handler as it is")
	}
}
