// Package authz is the DIVDS Docker authorization plugin: a route table
// that names the action of each API request, the gates that decide
// pull, push and container creation with the IVE's verdicts, and the
// after-pull removal of images that fail.
package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Action is what an API request does, as far as DIVDS cares.
type Action string

// The actions of the route table.
const (
	ActPull          Action = "pull"
	ActImport        Action = "import"
	ActPush          Action = "push"
	ActCreate        Action = "create"
	ActStart         Action = "start"
	ActLoad          Action = "load"
	ActBuild         Action = "build"
	ActCommit        Action = "commit"
	ActTag           Action = "tag"
	ActAuth          Action = "auth"
	ActPing          Action = "ping"
	ActService       Action = "service"
	ActPluginAdmin   Action = "plugin-admin"
	ActPluginInstall Action = "plugin-install"
	// ActPluginCreate makes a plugin from a rootfs tar in the body, which
	// the plugin is never sent: refused unless allow_plugin_admin.
	ActPluginCreate Action = "plugin-create"
	// ActExec runs a new process in a container, of the container's image.
	ActExec Action = "exec"
	// ActRename renames a container: refused while a start or exec of
	// either name is being decided (see repoLocks.beginRun).
	ActRename Action = "rename"
	// ActSwarmJoin makes this daemon run the tasks of services that other
	// managers, maybe without DIVDS, accept: swarm init and join.
	ActSwarmJoin Action = "swarm-join"
	// ActUnknown is a POST or PUT whose last segment is a verb that can
	// bring in, run or ship an image, on a path no route knows: refused,
	// since the daemon may know a route the table does not.
	ActUnknown Action = "unknown"
	ActOther   Action = "other"
)

// route maps a method and a decoded, version-less path to an action.
// Patterns are anchored; a named group "name" captures an image or
// plugin name, which may contain slashes.
type route struct {
	methods []string
	pattern *regexp.Regexp
	action  Action
}

// Names are matched as dockerd's router matches them: container routes
// take {name:.*} (a link alias such as "web/db" names the linked
// container), image and plugin routes likewise.
var routes = []route{
	{[]string{"POST"}, regexp.MustCompile(`^/images/create$`), ActPull}, // or import: see Parse
	{[]string{"POST"}, regexp.MustCompile(`^/images/(?P<name>.+)/push$`), ActPush},
	{[]string{"POST"}, regexp.MustCompile(`^/containers/create$`), ActCreate},
	// restart starts a stopped container too.
	{[]string{"POST"}, regexp.MustCompile(`^/containers/(?P<name>.+)/(start|restart)$`), ActStart},
	{[]string{"POST"}, regexp.MustCompile(`^/containers/(?P<name>.+)/exec$`), ActExec},
	{[]string{"POST"}, regexp.MustCompile(`^/containers/(?P<name>.+)/rename$`), ActRename},
	{[]string{"POST"}, regexp.MustCompile(`^/images/load$`), ActLoad},
	// BuildKit builds: the CLI's session and buildx's gRPC endpoint run
	// builds (and pull their bases) without /build.
	{[]string{"POST"}, regexp.MustCompile(`^/(build|session|grpc)$`), ActBuild},
	{[]string{"POST"}, regexp.MustCompile(`^/commit$`), ActCommit},
	{[]string{"POST"}, regexp.MustCompile(`^/images/(?P<name>.+)/tag$`), ActTag},
	{[]string{"POST"}, regexp.MustCompile(`^/auth$`), ActAuth},
	{[]string{"GET", "HEAD"}, regexp.MustCompile(`^/_ping$`), ActPing},
	// A swarm service's tasks are containers the daemon creates itself,
	// never through /containers/create.
	{[]string{"POST"}, regexp.MustCompile(`^/services/create$`), ActService},
	{[]string{"POST"}, regexp.MustCompile(`^/services/(?P<name>[^/]+)/update$`), ActService},
	{[]string{"POST"}, regexp.MustCompile(`^/swarm/(init|join)$`), ActSwarmJoin},
	// Installing or upgrading a plugin pulls its rootfs from a registry.
	{[]string{"POST"}, regexp.MustCompile(`^/plugins/pull$`), ActPluginInstall},
	{[]string{"POST"}, regexp.MustCompile(`^/plugins/(?P<name>.+)/upgrade$`), ActPluginInstall},
	{[]string{"POST"}, regexp.MustCompile(`^/plugins/create$`), ActPluginCreate},
	{[]string{"POST"}, regexp.MustCompile(`^/plugins/(?P<name>.+)/(disable|set)$`), ActPluginAdmin},
	{[]string{"DELETE"}, regexp.MustCompile(`^/plugins/(?P<name>.+)$`), ActPluginAdmin},
	// Routes that end in a gated verb and bring, run or ship no image:
	// named so that they are not taken for unknown ones. An exec
	// instance's start runs what its create (gated) set up; a container's
	// update changes resources and restart policy, not its image.
	{[]string{"POST"}, regexp.MustCompile(`^/(networks|volumes|secrets|configs)/create$`), ActOther},
	{[]string{"POST"}, regexp.MustCompile(`^/(secrets|configs|nodes)/[^/]+/update$`), ActOther},
	{[]string{"POST"}, regexp.MustCompile(`^/swarm/update$`), ActOther},
	{[]string{"POST"}, regexp.MustCompile(`^/exec/[^/]+/start$`), ActOther},
	{[]string{"POST"}, regexp.MustCompile(`^/containers/.+/update$`), ActOther},
	// A managed plugin's enable and push act on a rootfs already on this
	// host, which came through a gated install or a refused create.
	{[]string{"POST"}, regexp.MustCompile(`^/plugins/.+/(enable|push)$`), ActOther},
}

// gatedVerbs are the last path segments of the routes that can bring in,
// run or ship an image. A POST or PUT ending in one on a path the table
// does not know is refused (ActUnknown).
var gatedVerbs = map[string]bool{
	"create": true, "start": true, "restart": true, "push": true, "exec": true, "update": true,
	"commit": true, "enable": true, "upgrade": true, "pull": true, "init": true, "join": true,
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
	// Image is the image a container create or a service spec names,
	// from its JSON body, or the remote reference of a plugin install.
	Image string
	// Rollback is a service update that restores the previous spec,
	// whose image the body does not name.
	Rollback bool
	// Platform is the platform a pull, push or container create names,
	// normalized to os/arch[/variant]; empty when none is named.
	Platform string
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
	c, err := parseRoute(method, rawURI)
	if err != nil {
		return nil, err
	}
	p, q := c.Path, c.Query
	switch c.Action {
	case ActPull, ActPush, ActService, ActPluginInstall, ActTag, ActCommit, ActRename:
		// The daemon puts a form body's values ahead of the query's, and
		// plugins are never sent such a body: a gate that reads the query
		// would read other values than the daemon acts on. That includes
		// the holds: a tag's or commit's repo, a rename's new name.
		if formBody(headers) {
			return nil, malformed("%s %s with a form body, which would override the query the plugin sees", c.Method, p)
		}
	}
	switch c.Action {
	case ActPull:
		if err := c.imageCreate(); err != nil {
			return nil, err
		}
	case ActPush:
		if err := single(q, "tag"); err != nil {
			return nil, err
		}
		if c.Platform, err = parsePlatform(q, true); err != nil {
			return nil, err
		}
	case ActCreate:
		if err := c.containerCreate(body); err != nil {
			return nil, err
		}
		if c.Platform, err = parsePlatform(q, false); err != nil {
			return nil, err
		}
	case ActService:
		if err := c.serviceSpec(body); err != nil {
			return nil, err
		}
	case ActPluginInstall:
		if err := single(q, "remote", "name"); err != nil {
			return nil, err
		}
		if c.Image = q.Get("remote"); strings.TrimSpace(c.Image) == "" {
			return nil, malformed("plugin install or upgrade without a remote reference")
		}
	}
	return c, nil
}

// parseRoute reads the method and URI as dockerd does and names the
// route, without looking at the body (the response phase has none).
//
// dockerd's HTTP server reads the request line with url.ParseRequestURI,
// where a '#' does not start a fragment but stays in the query, while
// url.Parse would cut the query there: "fromSrc=-&#=&fromImage=x" is an
// import to one and a pull to the other. A URI that the two parsers, or
// the daemon's router and this table, could read differently is refused:
// a '#', control characters, spaces, a raw ';' in the query.
func parseRoute(method, rawURI string) (*Call, error) {
	if method == "" || rawURI == "" {
		return nil, malformed("empty method or URI")
	}
	for i := 0; i < len(rawURI); i++ {
		switch b := rawURI[i]; {
		case b == '#':
			return nil, malformed("URI with a '#', which the daemon keeps in the query")
		case b < 0x21 || b == 0x7f:
			return nil, malformed("URI with the control or space byte %#02x", b)
		}
	}
	u, err := url.ParseRequestURI(rawURI)
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
	matched := false
	for _, r := range routes {
		if !contains(r.methods, c.Method) {
			continue
		}
		m := r.pattern.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		matched = true
		c.Action = r.action
		if i := r.pattern.SubexpIndex("name"); i > 0 {
			c.Name = m[i]
		}
		break
	}
	if !matched && (c.Method == "POST" || c.Method == "PUT") && gatedVerbs[path.Base(p)] {
		c.Action = ActUnknown
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

func (c *Call) imageCreate() error {
	if err := single(c.Query, "fromImage", "fromSrc", "tag", "repo", "platform"); err != nil {
		return err
	}
	from, src := c.Query.Get("fromImage"), c.Query.Get("fromSrc")
	switch {
	case from != "" && src != "":
		return malformed("image create with both fromImage and fromSrc")
	case src != "":
		c.Action = ActImport
		return nil
	case from == "":
		return malformed("image create without fromImage or fromSrc")
	}
	// A reference the gate cannot read the daemon's way is refused before
	// the pull: after it, the gate could not tell what arrived.
	if _, err := pullReference(from, c.Query.Get("tag")); err != nil {
		return malformed("pull of %q (tag %q): %v", from, c.Query.Get("tag"), err)
	}
	var err error
	c.Platform, err = parsePlatform(c.Query, false)
	return err
}

func (c *Call) containerCreate(body []byte) error {
	img, err := bodyString(body, "container create", "Image")
	if err != nil {
		return err
	}
	c.Image = img
	return nil
}

// serviceSpec reads the image of a swarm service's containers. A
// rollback restores the previous spec, which the gate asks the daemon
// for; the daemon ignores the body then.
func (c *Call) serviceSpec(body []byte) error {
	what := "service spec"
	if c.Name != "" {
		// Only an update rolls back: a create ignores the parameter and
		// runs the image of its body.
		what = "service update of " + c.Name
		if err := single(c.Query, "rollback"); err != nil {
			return err
		}
		switch r := c.Query.Get("rollback"); r {
		case "":
		case "previous":
			c.Rollback = true
		default:
			return malformed("service update with rollback=%q", r)
		}
	}
	img, err := bodyString(body, what, "TaskTemplate", "ContainerSpec", "Image")
	if err != nil && !c.Rollback {
		return err
	}
	c.Image = img
	return nil
}

// bodyString reads the string at path in a JSON body, refusing what the
// daemon's decoder might read differently from the gate: a missing body
// (the daemon forwards only JSON under 1 MiB), more than one value, a key
// repeated at any level of the path (Go's decoder matches keys without
// regard to case and keeps the last; another decoder might keep the
// first), or anything but a non-empty string.
func bodyString(body []byte, what string, path ...string) (string, error) {
	if len(body) == 0 {
		return "", malformed("%s without a JSON body the plugin can read (bodies over 1 MiB, or not JSON, are not forwarded)", what)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return "", malformed("%s body: %v", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", malformed("%s body holds more than one JSON value", what)
	}
	for i, key := range path {
		v, err := member(raw, key)
		if err != nil {
			return "", malformed("%s body at %s: %v", what, strings.Join(path[:i+1], "."), err)
		}
		raw = v
	}
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil || strings.TrimSpace(s) == "" {
		return "", malformed("%s without an image (%s)", what, strings.Join(path, "."))
	}
	return s, nil
}

// member returns the value of key in the JSON object obj (nil when it is
// absent or obj is null), and an error when obj is not an object or
// names key more than once.
func member(obj json.RawMessage, key string) (json.RawMessage, error) {
	if obj == nil {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, nil
	}
	if t != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	var found json.RawMessage
	n := 0
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if s, ok := k.(string); ok && strings.EqualFold(s, key) {
			found = v
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("%s given %d times", key, n)
	}
	return found, nil
}

// PullRef is the reference a pull asks for: fromImage and tag, combined
// as the daemon combines them (see pullReference).
func (c *Call) PullRef() string {
	from, tag := c.Query.Get("fromImage"), c.Query.Get("tag")
	if ref, err := pullReference(from, tag); err == nil {
		return ref
	}
	// Parse refuses such a pull; a Call built by hand gets the
	// parameters as given.
	return combineRef(from, tag)
}

// pullReference combines a pull's fromImage and tag as dockerd does: it
// first trims one trailing ':' from fromImage (docker pull --all-tags of
// old clients sends "repo:"), so "repo:" with no tag is every tag of repo.
func pullReference(from, tag string) (string, error) {
	return combine(strings.TrimSuffix(from, ":"), tag)
}

// PushRef is the reference a push names: the name in the path and the
// tag parameter, combined as the daemon combines them. Empty tags and no
// tag or digest in the name mean every tag of the repository.
func (c *Call) PushRef() string { return combineRef(c.Name, c.Query.Get("tag")) }

// combineRef is combine, with the name and tag as given when the daemon
// cannot parse them (it then refuses the request itself).
func combineRef(image, tag string) string {
	ref, err := combine(image, tag)
	if err != nil {
		if tag != "" {
			return image + ":" + tag
		}
		return image
	}
	return ref
}

// combine combines an image name and a tag parameter the way the daemon
// does for pulls and pushes: the tag parameter replaces a tag in the
// name, and a digest there replaces the tag.
func combine(image, tag string) (string, error) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", err
	}
	if tag != "" {
		if dgst, err := digest.Parse(tag); err == nil {
			if ref, err = reference.WithDigest(reference.TrimNamed(ref), dgst); err != nil {
				return "", err
			}
		} else if ref, err = reference.WithTag(ref, tag); err != nil {
			return "", err
		}
	}
	return reference.FamiliarString(ref), nil
}
