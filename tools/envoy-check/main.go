// Command envoy-check checks Envoy v3 bootstrap files (YAML or JSON) against Envoy's
// own API, as generated into github.com/envoyproxy/go-control-plane/envoy (pinned in
// go.mod to the Envoy release the deployments run):
//
//  1. every field name must exist (protojson with DiscardUnknown false, plus a walk of
//     the document against the descriptors that names each unknown field, and each
//     unknown enum value, by its path);
//  2. every typed_config / typed_extension_protocol_options Any must resolve to a type
//     linked into this program (types.go);
//  3. every protoc-gen-validate rule must hold: ValidateAll on the Bootstrap and on
//     every message below it, and on the payload of every Any (ValidateAll does not
//     look into Any payloads), recursively.
//
// Each problem is printed as "FILE: PATH: MESSAGE" on stderr and the exit status is
// 1; a file without problems gets one "OK" line on stdout. Deprecated fields and enum
// values are reported as warnings (Envoy accepts them, with a warning of its own).
//
// Envoy checks more when it starts (extension names, references between clusters
// and routes, files on disk); this covers what its schema alone says.
//
// Usage: envoy-check FILE...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

const envoyModule = "github.com/envoyproxy/go-control-plane/envoy"

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: envoy-check FILE...   (Envoy v3 bootstrap, YAML or JSON)")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		if !checkFile(file) {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile checks one file, prints its problems or its OK line, and says whether it
// passed.
func checkFile(file string) bool {
	c := &checker{file: file, anyTypes: map[string]int{}}
	ok := c.run()
	for _, w := range c.warnings {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", file, w)
	}
	for _, p := range c.problems {
		fmt.Fprintf(os.Stderr, "%s: %s\n", file, p)
	}
	if !ok || len(c.problems) > 0 {
		fmt.Fprintf(os.Stderr, "envoy-check: %s: %d problem(s) against Envoy API %s\n",
			file, len(c.problems), apiVersion())
		return false
	}
	fmt.Printf("envoy-check: %s: OK against Envoy API %s: %d listeners, %d clusters, "+
		"%d typed configs (%d types), %d messages validated\n",
		file, apiVersion(), c.listeners, c.clusters, c.anys, len(c.anyTypes), c.messages)
	return true
}

// apiVersion is the go-control-plane/envoy version linked in (its versions follow
// Envoy's releases).
func apiVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == envoyModule {
				if dep.Replace != nil {
					dep = dep.Replace
				}
				return strings.TrimPrefix(dep.Version, "v") + " (" + envoyModule + " " + dep.Version + ")"
			}
		}
	}
	return "(unknown go-control-plane version)"
}

type checker struct {
	file     string
	problems []string
	warnings []string

	listeners, clusters, anys, messages int
	anyTypes                            map[string]int
}

func (c *checker) fail(path, format string, args ...any) {
	c.problems = append(c.problems, at(path)+fmt.Sprintf(format, args...))
}

func (c *checker) warn(path, format string, args ...any) {
	c.warnings = append(c.warnings, at(path)+fmt.Sprintf(format, args...))
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// run does the three checks; false means it could not get as far as validating.
func (c *checker) run() bool {
	raw, err := os.ReadFile(c.file)
	if err != nil {
		c.fail("", "%v", err)
		return false
	}
	// Strict: a key given twice in one mapping is an error, not "the last one wins".
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		c.fail("", "not valid YAML: %v", err)
		return false
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		c.fail("", "YAML to JSON: %v", err)
		return false
	}
	if _, isObject := doc.(map[string]any); !isObject {
		c.fail("", "the file is not a mapping (an Envoy bootstrap is one)")
		return false
	}

	// 1 and 2, with paths: unknown fields, unknown enum values, unresolvable @types.
	bs := &bootstrapv3.Bootstrap{}
	c.checkJSON(doc, bs.ProtoReflect().Descriptor(), "")

	// 1 and 2, as protobuf itself decides (also wrong value types and forms).
	strict := protojson.UnmarshalOptions{DiscardUnknown: false}
	if err := strict.Unmarshal(js, bs); err != nil {
		c.fail("", "protojson, strict decoding: %v", err)
		// Go on without the unknown fields, so one run reports the rule violations too.
		bs = &bootstrapv3.Bootstrap{}
		lenient := protojson.UnmarshalOptions{DiscardUnknown: true}
		if err := lenient.Unmarshal(js, bs); err != nil {
			return false
		}
	}

	// 3: ValidateAll on the Bootstrap and everything below it, Any payloads included.
	c.listeners = len(bs.GetStaticResources().GetListeners())
	c.clusters = len(bs.GetStaticResources().GetClusters())
	c.walk(bs.ProtoReflect(), "")
	return true
}

// ---- the document against the descriptors -------------------------------------------

// checkJSON checks the decoded JSON value v, which is to become a message of type md.
// Only names are checked here (fields, enum values, @types); protojson checks the
// value types.
func (c *checker) checkJSON(v any, md protoreflect.MessageDescriptor, path string) {
	if md.FullName() == "google.protobuf.Any" {
		c.checkAnyJSON(v, path)
		return
	}
	if md.ParentFile().Package() == "google.protobuf" {
		return // Duration, Struct, wrappers, ...: special JSON forms, protojson checks them
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return // protojson reports a value of the wrong type
	}
	c.checkFields(obj, md, path, nil)
}

func (c *checker) checkFields(obj map[string]any, md protoreflect.MessageDescriptor, path string, skip map[string]bool) {
	for _, k := range sortedKeys(obj) {
		if skip[k] {
			continue
		}
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		if fd == nil {
			c.fail(join(path, k), "unknown field %q in %s%s", k, md.FullName(), suggest(k, md))
			continue
		}
		c.checkFieldJSON(obj[k], fd, join(path, string(fd.Name())))
	}
}

func (c *checker) checkFieldJSON(v any, fd protoreflect.FieldDescriptor, path string) {
	if v == nil {
		return // null: the field's default
	}
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, k := range sortedKeys(m) {
			c.checkOneJSON(m[k], fd.MapValue(), fmt.Sprintf("%s[%q]", path, k))
		}
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			return
		}
		for i, el := range list {
			name, _ := jsonName(el)
			c.checkOneJSON(el, fd, path+index(i, name))
		}
	default:
		c.checkOneJSON(v, fd, path)
	}
}

func (c *checker) checkOneJSON(v any, fd protoreflect.FieldDescriptor, path string) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		c.checkJSON(v, fd.Message(), path)
	case protoreflect.EnumKind:
		s, ok := v.(string)
		ed := fd.Enum()
		if !ok || ed.FullName() == "google.protobuf.NullValue" {
			return
		}
		if ed.Values().ByName(protoreflect.Name(s)) == nil {
			names := make([]string, 0, ed.Values().Len())
			for i := 0; i < ed.Values().Len(); i++ {
				names = append(names, string(ed.Values().Get(i).Name()))
			}
			c.fail(path, "%q is not a value of %s (one of %s)", s, ed.FullName(), strings.Join(names, ", "))
		}
	}
}

// checkAnyJSON checks an Any in its JSON form: an "@type" naming a linked type, and
// that type's fields beside it.
func (c *checker) checkAnyJSON(v any, path string) {
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	url, _ := obj["@type"].(string)
	if url == "" {
		c.fail(path, "a typed config without \"@type\"")
		return
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		c.fail(join(path, "@type"), "cannot resolve %q: %s", url, missingTypeHint(url))
		return
	}
	md := mt.Descriptor()
	if md.ParentFile().Package() == "google.protobuf" {
		return // a well-known type's payload is under "value"; protojson checks it
	}
	c.checkFields(obj, md, path+"("+string(md.Name())+")", map[string]bool{"@type": true})
}

// missingTypeHint says which import would link the type behind url.
func missingTypeHint(url string) string {
	full := url[strings.LastIndex(url, "/")+1:]
	parts := strings.Split(full, ".")
	if len(parts) < 2 || parts[0] != "envoy" {
		return "not a type this checker links (is the name right?)"
	}
	pkg := envoyModule[:strings.LastIndex(envoyModule, "/")] + "/" + strings.Join(parts[:len(parts)-1], "/")
	return fmt.Sprintf("no such type in %s, or its package is not linked: if the name is right, "+
		"add _ %q to tools/envoy-check/types.go", envoyModule, pkg)
}

// ---- the decoded message: rules, Any payloads, deprecations ---------------------------

type validator interface{ ValidateAll() error }

// pgvError is what protoc-gen-validate's generated <Msg>ValidationError types have.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

type multiError interface{ AllErrors() []error }

const embeddedReason = "embedded message failed validation"

// walk validates m and every message below it, the payloads of Anys included. Each
// message's ValidateAll reports its own rules here; its reports about embedded
// messages are left out, as the walk validates those messages itself, under their
// own paths.
func (c *checker) walk(m protoreflect.Message, path string) {
	c.messages++
	md := m.Descriptor()
	if v, ok := m.Interface().(validator); ok {
		c.validation(v.ValidateAll(), md, path)
	}
	if md.FullName() == "google.protobuf.Any" {
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			c.fail(path, "an Any of unexpected Go type %T", m.Interface())
			return
		}
		c.anys++
		c.anyTypes[a.GetTypeUrl()]++
		inner, err := a.UnmarshalNew()
		if err != nil {
			c.fail(path, "cannot decode the %q payload: %v", a.GetTypeUrl(), err)
			return
		}
		c.walk(inner.ProtoReflect(), path+"("+string(inner.ProtoReflect().Descriptor().Name())+")")
		return
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		fpath := join(path, string(fd.Name()))
		v := m.Get(fd)
		c.deprecations(fd, v, fpath)
		switch {
		case fd.IsList():
			if !isMessage(fd) {
				continue
			}
			list := v.List()
			for j := 0; j < list.Len(); j++ {
				el := list.Get(j).Message()
				c.walk(el, fpath+index(j, messageName(el)))
			}
		case fd.IsMap():
			if !isMessage(fd.MapValue()) {
				continue
			}
			keys := []protoreflect.MapKey{}
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(a, b int) bool { return keys[a].String() < keys[b].String() })
			for _, k := range keys {
				c.walk(v.Map().Get(k).Message(), fmt.Sprintf("%s[%q]", fpath, k.String()))
			}
		case isMessage(fd):
			c.walk(v.Message(), fpath)
		}
	}
}

// validation reports the rule violations in err (from ValidateAll on a message of
// type md at path) that are this message's own.
func (c *checker) validation(err error, md protoreflect.MessageDescriptor, path string) {
	if err == nil {
		return
	}
	errs := []error{err}
	if me, ok := err.(multiError); ok {
		errs = me.AllErrors()
	}
	for _, e := range errs {
		pe, ok := e.(pgvError)
		if !ok {
			c.fail(path, "%v", e)
			continue
		}
		if pe.Reason() == embeddedReason && pe.Cause() != nil {
			continue // the walk reaches that message and reports it there
		}
		msg := pe.Reason()
		if pe.Key() {
			msg = "map key: " + msg
		}
		if cause := pe.Cause(); cause != nil {
			msg += ": " + cause.Error()
		}
		c.fail(join(path, protoFieldName(md, pe.Field())), "%s (rule of %s)", msg, md.FullName())
	}
}

func (c *checker) deprecations(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) {
	if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
		c.warn(path, "deprecated field of %s", fd.ContainingMessage().FullName())
	}
	if fd.Kind() != protoreflect.EnumKind || fd.IsMap() {
		return
	}
	check := func(n protoreflect.EnumNumber) {
		ev := fd.Enum().Values().ByNumber(n)
		if ev == nil {
			return
		}
		if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
			c.warn(path, "deprecated value %s of %s", ev.Name(), fd.Enum().FullName())
		}
	}
	if fd.IsList() {
		for i := 0; i < v.List().Len(); i++ {
			check(v.List().Get(i).Enum())
		}
	} else {
		check(v.Enum())
	}
}

// protoFieldName turns protoc-gen-validate's Go field name ("ConnectTimeout",
// "Domains[0]") back into the proto name ("connect_timeout", "domains[0]").
func protoFieldName(md protoreflect.MessageDescriptor, goName string) string {
	base, rest := goName, ""
	if i := strings.IndexByte(goName, '['); i >= 0 {
		base, rest = goName[:i], goName[i:]
	}
	squash := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for i := 0; i < md.Fields().Len(); i++ {
		if name := string(md.Fields().Get(i).Name()); squash(name) == squash(base) {
			return name + rest
		}
	}
	for i := 0; i < md.Oneofs().Len(); i++ {
		if name := string(md.Oneofs().Get(i).Name()); squash(name) == squash(base) {
			return name + " (one of)" + rest
		}
	}
	return goName
}

// ---- helpers ------------------------------------------------------------------------

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

// messageName is the value of m's string field "name", if it has one: it makes the
// paths readable (clusters[4:gateway]).
func messageName(m protoreflect.Message) string {
	fd := m.Descriptor().Fields().ByName("name")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return m.Get(fd).String()
}

func jsonName(v any) (string, bool) {
	obj, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	s, ok := obj["name"].(string)
	return s, ok
}

func index(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("[%d]", i)
	}
	return fmt.Sprintf("[%d:%s]", i, name)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest names the field of md closest to the unknown name k, if one is close.
func suggest(k string, md protoreflect.MessageDescriptor) string {
	best, bestDist := "", 3
	for i := 0; i < md.Fields().Len(); i++ {
		name := string(md.Fields().Get(i).Name())
		if d := distance(k, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
