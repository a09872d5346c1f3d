// Package authz is the DIVDS Docker authorization plugin: a route table
// that names the action of each API request, the gates that decide
// pull, push and container creation with the IVE's verdicts, and the
// after-pull removal of images that fail.
package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Action is what an API request does, as far as DIVDS cares.
type Action string

// The actions of the route table.
const (
	ActPull        Action = "pull"
	ActImport      Action = "import"
	ActPush        Action = "push"
	ActCreate      Action = "create"
	ActStart       Action = "start"
	ActLoad        Action = "load"
	ActBuild       Action = "build"
	ActCommit      Action = "commit"
	ActTag         Action = "tag"
	ActAuth        Action = "auth"
	ActPing        Action = "ping"
	ActPluginAdmin Action = "plugin-admin"
	ActOther       Action = "other"
)

// route maps a method and a decoded, version-less path to an action.
// Patterns are anchored; a named group "name" captures an image or
// plugin name, which may contain slashes.
type route struct {
	methods []string
	pattern *regexp.Regexp
	action  Action
}

var routes = []route{
	{[]string{"POST"}, regexp.MustCompile(`^/images/create$`), ActPull}, // or import: see Parse
	{[]string{"POST"}, regexp.MustCompile(`^/images/(?P<name>.+)/push$`), ActPush},
	{[]string{"POST"}, regexp.MustCompile(`^/containers/create$`), ActCreate},
	// restart starts a stopped container too.
	{[]string{"POST"}, regexp.MustCompile(`^/containers/(?P<name>[^/]+)/(start|restart)$`), ActStart},
	{[]string{"POST"}, regexp.MustCompile(`^/images/load$`), ActLoad},
	{[]string{"POST"}, regexp.MustCompile(`^/build$`), ActBuild},
	{[]string{"POST"}, regexp.MustCompile(`^/commit$`), ActCommit},
	{[]string{"POST"}, regexp.MustCompile(`^/images/(?P<name>.+)/tag$`), ActTag},
	{[]string{"POST"}, regexp.MustCompile(`^/auth$`), ActAuth},
	{[]string{"GET", "HEAD"}, regexp.MustCompile(`^/_ping$`), ActPing},
	{[]string{"POST"}, regexp.MustCompile(`^/plugins/(?P<name>.+)/(disable|set|upgrade)$`), ActPluginAdmin},
	{[]string{"DELETE"}, regexp.MustCompile(`^/plugins/(?P<name>.+)$`), ActPluginAdmin},
}

// versionPrefix is the API version the daemon's router accepts before a
// path: its pattern is /v{version:[0-9.]+}, so /v1.41, /v1.041, /v1 and
// also /v1.40.5 or /v1..41 (which the version check then accepts or
// refuses); or no prefix at all. A narrower pattern here would leave
// "/v1.40.5/images/x/push" unrecognized, and ungated, while the daemon
// pushes.
var versionPrefix = regexp.MustCompile(`^/v[0-9.]+(/|$)`)

// Call is a request as the gates see it.
type Call struct {
	Action Action
	Method string
	Path   string // decoded, without the version prefix
	// Name is the image (push, tag) or plugin named in the path.
	Name string
	// Query holds the request's parameters.
	Query url.Values
	// Image is the image a create names, from its JSON body.
	Image string
}

// ErrMalformed marks requests the gates refuse to interpret: a gate that
// guesses is a gate with a bypass.
var ErrMalformed = errors.New("malformed request")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Parse names the action of a request. RequestURI is raw: it may be in
// absolute form, %-encoded, without a version prefix, with parameters in
// any order or repeated. It is parsed with net/url and matched on the
// decoded, cleaned path, the way the daemon's router sees it.
func Parse(method, rawURI string, headers map[string]string, body []byte) (*Call, error) {
	if method == "" || rawURI == "" {
		return nil, malformed("empty method or URI")
	}
	u, err := url.Parse(rawURI)
	if err != nil {
		return nil, malformed("URI %q: %v", rawURI, err)
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	p = versionPrefix.ReplaceAllString(path.Clean("/"+p), "/")
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, malformed("query of %q: %v", rawURI, err)
	}
	c := &Call{Action: ActOther, Method: strings.ToUpper(method), Path: p, Query: q}
	for _, r := range routes {
		if !contains(r.methods, c.Method) {
			continue
		}
		m := r.pattern.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		c.Action = r.action
		if i := r.pattern.SubexpIndex("name"); i > 0 {
			c.Name = m[i]
		}
		break
	}
	switch c.Action {
	case ActPull:
		if err := c.imageCreate(headers); err != nil {
			return nil, err
		}
	case ActPush:
		if err := single(q, "tag"); err != nil {
			return nil, err
		}
	case ActCreate:
		if err := c.containerCreate(headers, body); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// single refuses a parameter given twice with different values: the
// daemon reads the first, and a gate must not read another.
func single(q url.Values, keys ...string) error {
	for _, k := range keys {
		vs := q[k]
		for _, v := range vs[min(1, len(vs)):] {
			if v != vs[0] {
				return malformed("parameter %s given %d times with different values", k, len(vs))
			}
		}
	}
	return nil
}

// formBody reports a body the daemon would parse as form values, which
// take precedence over the query and which the plugin is never sent.
func formBody(headers map[string]string) bool {
	ct := header(headers, "Content-Type")
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err != nil || mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

func header(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func (c *Call) imageCreate(headers map[string]string) error {
	if formBody(headers) {
		return malformed("image create with a form body, which would override the query the plugin sees")
	}
	if err := single(c.Query, "fromImage", "fromSrc", "tag", "repo", "platform"); err != nil {
		return err
	}
	from, src := c.Query.Get("fromImage"), c.Query.Get("fromSrc")
	switch {
	case from != "" && src != "":
		return malformed("image create with both fromImage and fromSrc")
	case src != "":
		c.Action = ActImport
	case from == "":
		return malformed("image create without fromImage or fromSrc")
	}
	return nil
}

func (c *Call) containerCreate(headers map[string]string, body []byte) error {
	if len(body) == 0 {
		return malformed("container create without a JSON body the plugin can read (bodies over 1 MiB, or not JSON, are not forwarded)")
	}
	var cfg struct {
		Image *string `json:"Image"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&cfg); err != nil {
		return malformed("container create body: %v", err)
	}
	if dec.More() {
		return malformed("container create body holds more than one JSON value")
	}
	if cfg.Image == nil || strings.TrimSpace(*cfg.Image) == "" {
		return malformed("container create without an image")
	}
	if dup, err := duplicateKey(body, "Image"); err != nil || dup {
		return malformed("container create body names Image more than once")
	}
	c.Image = *cfg.Image
	return nil
}

// duplicateKey reports whether the top-level object repeats key: Go's
// decoder keeps the last, another decoder might keep the first.
func duplicateKey(body []byte, key string) (bool, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	t, err := dec.Token()
	if err != nil || t != json.Delim('{') {
		return false, err
	}
	n := 0
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false, err
		}
		if s, ok := k.(string); ok && strings.EqualFold(s, key) {
			n++
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false, err
		}
	}
	return n > 1, nil
}

// PullRef is the reference a pull asks for: fromImage with its tag or
// digest (the tag parameter may hold either).
func (c *Call) PullRef() string {
	ref := c.Query.Get("fromImage")
	tag := c.Query.Get("tag")
	switch {
	case tag == "":
	case strings.Contains(tag, ":"): // a digest: sha256:…
		ref += "@" + tag
	default:
		ref += ":" + tag
	}
	return ref
}
