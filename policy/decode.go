package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// decode strictly decodes data into a Policy. Every failure is a
// *ValidationError; its problems are the unknown fields with their locations
// when there are any, else the single decoding error.
func decode(data []byte) (*Policy, error) {
	// A syntax error after the first document still means there is more
	// than one; one in the first document is left to UnmarshalStrict.
	if n, err := countDocuments(data); n > 1 || n == 1 && err != nil {
		return nil, &ValidationError{
			Problems: []string{"file must hold exactly one YAML document"},
			err:      err,
		}
	}
	var p Policy
	err := yaml.UnmarshalStrict(data, &p)
	// UnmarshalStrict stops at the first unknown field and, like
	// encoding/json, matches field names case-insensitively: list every
	// unknown field, case-sensitively, whether or not it failed.
	if unknown := unknownFields(data); len(unknown) > 0 {
		return nil, &ValidationError{Problems: unknown, err: err}
	}
	if err != nil {
		return nil, &ValidationError{Problems: []string{decodeProblem(err)}, err: err}
	}
	return &p, nil
}

// countDocuments returns the number of YAML documents in data.
func countDocuments(data []byte) (int, error) {
	dec := yamlv2.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("count yaml documents: %w", err)
		}
		n++
	}
}

// decodeProblem turns a sigs.k8s.io/yaml error into a problem, without the
// library's layering prefixes.
func decodeProblem(err error) string {
	msg := err.Error()
	for _, prefix := range []string{
		"error converting YAML to JSON: ",
		"error unmarshaling JSON: ",
		"while decoding JSON: ",
	} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return "decode: " + strings.Join(strings.Fields(msg), " ")
}

// unknownFields returns one problem per field of data that Policy does not
// have, in a stable order. It returns nil when data does not decode.
func unknownFields(data []byte) []string {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		return nil
	}
	var out []string
	walkUnknown(v, reflect.TypeFor[Policy](), "", &out)
	return out
}

// walkUnknown appends a problem for each object key in v that has no field
// in the JSON shape of t. Values of the wrong shape are left to the decoder.
func walkUnknown(v any, t reflect.Type, path string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := k
			if path != "" {
				name = path + "." + k
			}
			ft, ok := jsonField(t, k)
			if !ok {
				*out = append(*out, name+": unknown field")
				continue
			}
			walkUnknown(m[k], ft, name, out)
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range s {
			walkUnknown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// jsonField returns the type of the exported field of struct t whose JSON
// name is exactly name.
func jsonField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f.Type, true
		}
	}
	return nil, false
}
