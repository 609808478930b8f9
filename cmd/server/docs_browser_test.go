package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/onsale-dev/onsale/api"
	"github.com/onsale-dev/onsale/internal/platform/browsertest"
)

// showcaseOperation is the operation the second screenshot shows: the step of a sale that every
// customer takes.
const showcaseOperation = "Hold tickets"

// TestDocsRenderInBrowser opens the reference at /docs in a real browser and checks that Redoc
// rendered the published document (its title and every operation's summary are on the page)
// from this server alone, and leaves screenshots of it for people to look at.
func TestDocsRenderInBrowser(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.Spec)
	if err != nil {
		t.Fatalf("load api/openapi.yaml: %v", err)
	}
	var summaries []string
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.Summary != "" {
				summaries = append(summaries, op.Summary)
			}
		}
	}
	slices.Sort(summaries)
	if doc.Info.Title == "" || !slices.Contains(summaries, showcaseOperation) {
		t.Fatalf("api/openapi.yaml has title %q and summaries %q; the check needs a title and %q",
			doc.Info.Title, summaries, showcaseOperation)
	}

	_, base := startApp(t, nil)
	ctx := browsertest.New(t, time.Minute)
	requests := browsertest.RecordRequests(t, ctx)

	// Redoc replaces the <redoc> element with the document once it has fetched and parsed the
	// spec; the document's heading only exists then.
	heading := chromedp.CSS(".api-content h1")
	err = chromedp.Do(ctx, chromedp.Navigate(base+"/docs"), chromedp.WaitVisible(heading))
	if err != nil {
		t.Fatalf("/docs did not render the document: %v (requests: %+v)", err, requests.All())
	}
	browsertest.Screenshot(t, ctx, "top")

	title, err := chromedp.Run(ctx, chromedp.Text(heading))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, doc.Info.Title) {
		t.Errorf("the rendered heading is %q; want the spec's title %q", title, doc.Info.Title)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range summaries {
		if !strings.Contains(text, s) {
			t.Errorf("the rendered page lacks the operation %q", s)
		}
	}

	// Bring the showcase operation's heading to the top of the window, as following its link in
	// the menu would.
	quoted, _ := json.Marshal(showcaseOperation)
	found, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const h = [...document.querySelectorAll(".api-content h2")].find(h => h.textContent.trim() === `+string(quoted)+`);
		if (!h) return false;
		h.scrollIntoView({block: "start"});
		return true;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("no heading %q among the rendered operations", showcaseOperation)
	} else {
		browsertest.Screenshot(t, ctx, "operation")
	}

	if elsewhere := requests.Elsewhere(base); len(elsewhere) > 0 {
		t.Errorf("/docs made the browser send requests to other hosts: %q", elsewhere)
	}
}
