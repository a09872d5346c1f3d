package scoring

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// ValidatePattern checks an image-reference pattern from a policy.
func ValidatePattern(pat string) error {
	switch {
	case pat == "":
		return fmt.Errorf("empty image pattern")
	case len(pat) > 512:
		return fmt.Errorf("image pattern is longer than 512 characters")
	case strings.ContainsAny(pat, " \t\r\n"):
		return fmt.Errorf("image pattern %q contains white space", pat)
	}
	if !strings.ContainsAny(pat, "*?") && !isID(pat) {
		if _, err := reference.ParseNormalizedNamed(pat); err != nil {
			return fmt.Errorf("image pattern %q is not an image reference: %v", pat, err)
		}
	}
	return nil
}

// MatchImage reports whether an image known by refs (its names, digests
// and ID, in any form) matches pat.
//
// A pattern without wildcards is a reference: "ubuntu" matches every tag
// and digest of docker.io/library/ubuntu, "ubuntu:18.04" only that tag,
// and an image ID ("sha256:…") only that image. With "*" (any run of
// characters, "/" included) or "?" (one character) it is matched against
// both the full and the short form of each name: "registry.example.com/*"
// matches everything from that registry, "*/app:*" any repository "app".
func MatchImage(pat string, refs []string) bool {
	var want string
	glob := strings.ContainsAny(pat, "*?")
	if !glob {
		want = pat
		if n, err := reference.ParseNormalizedNamed(pat); err == nil && !isID(pat) {
			want = n.String()
		}
	}
	for _, r := range refs {
		for _, c := range candidates(r) {
			if (glob && globMatch(pat, c)) || (!glob && c == want) {
				return true
			}
		}
	}
	return false
}

func matchAny(pats, refs []string) bool {
	for _, p := range pats {
		if MatchImage(p, refs) {
			return true
		}
	}
	return false
}

// isID reports whether s looks like an image ID rather than a name.
func isID(s string) bool {
	return strings.HasPrefix(s, "sha256:") && !strings.Contains(s, "/")
}

// candidates lists the forms a reference is known by: as given, full and
// short, with and without its tag or digest.
func candidates(ref string) []string {
	out := []string{ref}
	if isID(ref) {
		return out
	}
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return out
	}
	out = append(out, n.String(), reference.FamiliarString(n), n.Name(), reference.FamiliarName(n))
	if t := reference.TagNameOnly(n); t.String() != n.String() {
		out = append(out, t.String(), reference.FamiliarString(t))
	}
	return out
}

// globMatch matches s against a pattern of literal characters, "*" and
// "?", in linear space and O(len(p)·len(s)) time at worst: an admin's
// pattern cannot make a gate hang.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
