package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/quay/claircore"
	"github.com/quay/claircore/libvuln/driver"
)

// MaxTrackerSize bounds the Debian tracker document (about 70 MB today).
const MaxTrackerSize = 1 << 30

// debianFactory wraps claircore's Debian factory so that its updater
// parses the tracker JSON even where a CVE has `"releases": []`: the
// tracker writes an empty object as an empty list there, and claircore's
// decoder (a map) rejects the whole document for it.
type debianFactory struct{ driver.UpdaterSetFactory }

func (f debianFactory) Configure(ctx context.Context, cf driver.ConfigUnmarshaler, c *http.Client) error {
	if cfg, ok := f.UpdaterSetFactory.(driver.Configurable); ok {
		return cfg.Configure(ctx, cf, c)
	}
	return nil
}

func (f debianFactory) UpdaterSet(ctx context.Context) (driver.UpdaterSet, error) {
	set, err := f.UpdaterSetFactory.UpdaterSet(ctx)
	if err != nil {
		return set, err
	}
	out := driver.NewUpdaterSet()
	for _, u := range set.Updaters() {
		if err := out.Add(&debianUpdater{Updater: u}); err != nil {
			return out, err
		}
	}
	return out, nil
}

type debianUpdater struct{ driver.Updater }

func (u *debianUpdater) Configure(ctx context.Context, cf driver.ConfigUnmarshaler, c *http.Client) error {
	if cfg, ok := u.Updater.(driver.Configurable); ok {
		return cfg.Configure(ctx, cf, c)
	}
	return nil
}

func (u *debianUpdater) Parse(ctx context.Context, rc io.ReadCloser) ([]*claircore.Vulnerability, error) {
	defer rc.Close()
	fixed, err := NormalizeDebianTracker(io.LimitReader(rc, MaxTrackerSize+1))
	if err != nil {
		return nil, err
	}
	return u.Updater.Parse(ctx, io.NopCloser(bytes.NewReader(fixed)))
}

// NormalizeDebianTracker rewrites a tracker document so claircore's parser
// takes it: `"releases": []` (and null) become `{}`. Only the fields
// claircore reads are kept, so the rewrite is also smaller.
func NormalizeDebianTracker(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read debian tracker: %w", err)
	}
	if len(data) > MaxTrackerSize {
		return nil, fmt.Errorf("debian tracker is larger than %d bytes", MaxTrackerSize)
	}
	type vuln struct {
		Description string          `json:"description"`
		Releases    json.RawMessage `json:"releases"`
	}
	var doc map[string]map[string]*vuln
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse debian tracker: %w", err)
	}
	for src, vulns := range doc {
		for id, v := range vulns {
			if v == nil {
				delete(vulns, id)
				continue
			}
			rel := bytes.TrimSpace(v.Releases)
			switch {
			case len(rel) == 0, bytes.Equal(rel, []byte("null")), bytes.Equal(rel, []byte("[]")):
				v.Releases = json.RawMessage("{}")
			case rel[0] != '{':
				return nil, fmt.Errorf("parse debian tracker: %s %s: releases is neither an object nor an empty list", src, id)
			}
		}
	}
	return json.Marshal(doc)
}
