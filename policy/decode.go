package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// decode strictly decodes data into a Policy. Every failure is a
// *ValidationError: the YAML error (syntax, duplicate key, more than one
// document), else the JSON type error, else one problem per unknown field
// with its location, all of them.
func decode(data []byte) (*Policy, error) {
	// A syntax error after the first document still means there is more
	// than one; one in the first document is left to toJSON.
	if n, err := countDocuments(data); n > 1 || n == 1 && err != nil {
		return nil, &ValidationError{
			Problems: []string{"file must hold exactly one YAML document"},
			err:      err,
		}
	}
	j, err := toJSON(data)
	if err != nil {
		return nil, &ValidationError{Problems: []string{decodeProblem(err)}, err: err}
	}
	var p Policy
	// Field names match case-sensitively; the strict errors (unknown and
	// duplicate fields, with their paths) come only when nothing else
	// failed.
	strict, err := k8sjson.UnmarshalStrict(j, &p)
	if err != nil {
		return nil, &ValidationError{Problems: []string{decodeProblem(err)}, err: err}
	}
	if len(strict) > 0 {
		problems := make([]string, len(strict))
		for i, e := range strict {
			problems[i] = strictProblem(e)
		}
		return nil, &ValidationError{Problems: problems, err: errors.Join(strict...)}
	}
	return &p, nil
}

// toJSON converts one YAML document to JSON as sigs.k8s.io/yaml does when it
// decodes into a Policy: strictly (a duplicate key is an error), and guided
// by the Policy type, so that a YAML number or boolean whose field is a
// string becomes that string (`realm: yes` is "true", `prefix: 42` is "42").
// The library hands the converted document to its JSON options as a
// decoder: the option here takes the document and leaves null to decode.
func toJSON(data []byte) ([]byte, error) {
	var (
		doc    json.RawMessage
		docErr error
	)
	take := func(d *json.Decoder) *json.Decoder {
		docErr = d.Decode(&doc)
		return json.NewDecoder(strings.NewReader("null"))
	}
	if err := yaml.UnmarshalStrict(data, new(Policy), take); err != nil {
		return nil, err
	}
	if docErr != nil {
		return nil, fmt.Errorf("converted document: %w", docErr)
	}
	return doc, nil
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

// decodeProblem turns a decoding error into a problem, without
// sigs.k8s.io/yaml's layering prefix.
func decodeProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	return "decode: " + strings.Join(strings.Fields(msg), " ")
}

// strictProblem turns a strict error of sigs.k8s.io/json, `unknown field
// "routes[1].requires"`, into the problem "routes[1].requires: unknown
// field".
func strictProblem(err error) string {
	msg := err.Error()
	var fe k8sjson.FieldError
	if !errors.As(err, &fe) {
		return "decode: " + msg
	}
	path := fe.FieldPath()
	kind, ok := strings.CutSuffix(msg, " "+strconv.Quote(path))
	if !ok {
		kind = msg
	}
	return path + ": " + kind
}
