package console

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// requireBrowserEnv, when set (make console-test does), makes a missing
// browser a failure instead of a skip.
const requireBrowserEnv = "KCQRS_CONSOLE_BROWSER"

// browser starts headless Chromium for the test, or skips (fails under
// KCQRS_CONSOLE_BROWSER=require) when none is installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		msg := "no chromium binary found (apt-get install -y chromium); the browser tests need one"
		if os.Getenv(requireBrowserEnv) == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	// The first Run starts the browser, for the context's lifetime (so
	// with no timeout: one would stop the browser).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// screenshotDir is where the pages' screenshots go: $KCQRS_CONSOLE_SCREENSHOTS
// or a new temporary directory (kept after the test, to be looked at).
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KCQRS_CONSOLE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "kcqrs-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBrowser opens every page in headless Chromium after a real workload
// and checks the text a person sees (the rendered DOM's innerText), saving a
// screenshot of each page; then re-drives the dead letter with its button.
func TestBrowser(t *testing.T) {
	ctx := browser(t)
	w := newWorkload(t)
	w.startSaga(t)
	srv := httptest.NewServer(w.console(t, func(o *Options) { o.AllowRedrive = true }).Handler())
	t.Cleanup(srv.Close)
	shots := screenshotDir(t)
	t.Logf("screenshots in %s", shots)

	// visit loads path until its main text holds every want (the lag and
	// readiness settle a moment after the workload), then saves a
	// screenshot.
	visit := func(name, path string, want ...string) string {
		t.Helper()
		var text string
		eventually(t, name+" page", func() (bool, string) {
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err := chromedp.Do(actx, chromedp.Navigate(srv.URL+path), chromedp.WaitVisible(chromedp.CSS("main")))
			if err == nil {
				text, err = chromedp.Run(actx, chromedp.Text(chromedp.CSS("main")))
			}
			if err != nil {
				return false, err.Error()
			}
			for _, w := range want {
				if !strings.Contains(text, w) {
					return false, "no " + w + " in:\n" + text
				}
			}
			return true, ""
		})
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG (below: JPEG)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(shots, name+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", name, file)
		return text
	}

	visit("topology", "/topology", "consumer group kcqrs-processor", "commands", "snapshots-changelog", "commands-dlq",
		"OpenAccount", "AccountOpened", "Mermaid source")
	visit("workers", "/workers", "kcqrs-processor-worker-a", "commands/0, commands/1, commands/2, commands/3",
		"Transactions committed 4, aborted 0", "Ready partitions: 4 of 4")
	visit("groups", "/groups", "kcqrs-processor (processor)", "kcqrs-transfers (saga)", "State Stable")
	visit("deadletters", "/deadletters", "1 dead letter(s) on commands-dlq", "undecodable", w.deadID, "this is not avro", "Re-drive")
	visit("aggregate", "/aggregate?type=account&id="+w.account, "Version 2", `"Balance": 4200`, `"Owner": "Alice"`, "insufficient_funds", "REJECTED")

	// The inspector's form, as a person uses it.
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(actx, chromedp.Navigate(srv.URL+"/aggregate"),
		chromedp.SetValue(chromedp.CSS(`select[name="type"]`), "account"),
		chromedp.SendKeys(chromedp.CSS(`input[name="id"]`), w.account),
		chromedp.Click(chromedp.CSS(`form button`)),
		chromedp.WaitVisible(chromedp.CSS(`pre`))); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(actx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Version 2") {
		t.Fatalf("inspector form: %s", text)
	}

	// Re-drive with the button: the page says so, and the processor
	// dead-letters the (still undecodable) command again.
	if err := chromedp.Do(actx, chromedp.Navigate(srv.URL+"/deadletters"),
		chromedp.Click(chromedp.CSS(`form.inline button`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`))); err != nil {
		t.Fatal(err)
	}
	if text, err = chromedp.Run(actx, chromedp.Text(chromedp.CSS(".notice"))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "re-drove dead letter") || !strings.Contains(text, w.deadID) {
		t.Fatalf("after re-drive: %s", text)
	}
	visit("deadletters-redriven", "/deadletters", "2 dead letter(s) on commands-dlq")
}
