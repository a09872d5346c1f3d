// Package mirror answers HTTP requests from a directory laid out as
// <host>/<url path>, so that claircore's updaters run with no network:
// the air-gap mirror of `db update --mirror DIR`, and the sample data
// embedded in the binary.
package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
)

// Request is one request the transport answered, for audits and tests.
type Request struct {
	Method string
	URL    string
	Status int
	// File is the mirror file that answered, "" when none did.
	File string
}

// Transport is an http.RoundTripper that never touches the network.
type Transport struct {
	root fs.FS

	mu  sync.Mutex
	log []Request
}

// New returns a transport answering from root.
func New(root fs.FS) *Transport { return &Transport{root: root} }

// Requests lists every request made so far, in order.
func (t *Transport) Requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Request(nil), t.log...)
}

// Client returns an http.Client using the transport.
func (t *Transport) Client() *http.Client { return &http.Client{Transport: t} }

// RoundTrip implements http.RoundTripper with http.FileServer semantics
// (HEAD, Range, directory listings, Last-Modified from the file's time,
// 404 for what is missing), plus Canonical's content negotiation: when
// PATH is missing, PATH.bz2 exists and Accept lists application/x-bzip2,
// it answers with PATH.bz2, Content-Location and Content-Type set as
// Canonical's server does. Without that rule claircore's ubuntu updater
// silently finds no release.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	host := req.URL.Hostname()
	p := path.Clean("/" + req.URL.Path)
	if strings.HasSuffix(req.URL.Path, "/") && p != "/" {
		p += "/" // a directory: FileServer would redirect without it
	}
	rec := Request{Method: req.Method, URL: req.URL.String()}
	w := httptest.NewRecorder()

	sub, err := fs.Sub(t.root, host)
	switch {
	case err != nil || host == "" || strings.Contains(host, "/") || host == "." || host == "..":
		w.WriteHeader(http.StatusNotFound)
	default:
		servePath := p
		if !strings.HasSuffix(p, "/") && !exists(sub, p) && exists(sub, p+".bz2") && acceptsBzip2(req) {
			servePath = p + ".bz2"
			w.Header().Set("Content-Location", path.Base(servePath))
			w.Header().Set("Content-Type", "application/x-bzip2")
		}
		if exists(sub, servePath) {
			rec.File = path.Join(host, servePath)
		}
		r2 := req.Clone(req.Context())
		r2.URL.Path = servePath
		r2.URL.RawPath = ""
		http.FileServer(http.FS(sub)).ServeHTTP(w, r2)
	}
	res := w.Result()
	res.Request = req // claircore's ubuntu factory resolves Content-Location against it
	rec.Status = res.StatusCode
	if res.StatusCode >= 400 {
		rec.File = ""
	}
	t.mu.Lock()
	t.log = append(t.log, rec)
	t.mu.Unlock()
	if req.Method == http.MethodHead {
		res.Body = io.NopCloser(bytes.NewReader(nil))
	}
	return res, nil
}

func exists(f fs.FS, p string) bool {
	name := strings.TrimPrefix(p, "/")
	if name == "" {
		name = "."
	}
	_, err := fs.Stat(f, name)
	return err == nil
}

func acceptsBzip2(req *http.Request) bool {
	for _, part := range strings.Split(req.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/x-bzip2") {
			return true
		}
	}
	return false
}

// Check reports an error when dir does not look like a mirror: a clear
// message up front beats every updater failing with a 404.
func Check(root fs.FS, name string) error {
	entries, err := fs.ReadDir(root, ".")
	if err != nil {
		return fmt.Errorf("mirror %s: %w", name, err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.Contains(e.Name(), ".") {
			return nil
		}
	}
	return errors.New("mirror " + name + " has no <host>/ directories (want e.g. secdb.alpinelinux.org/v3.10/main.json)")
}
