package main

import (
	"encoding/json"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Enums on the command line and in JSON files take friendly spellings:
// "local-only", "local_only", "LOCAL_ONLY" and the proto name
// "LOCALITY_PREFERENCE_LOCAL_ONLY" are one value. An unknown spelling is an
// error that lists the valid ones.

// enumPrefix is what every value name of ed starts with ("LOCALITY_PREFERENCE_").
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	prefix := string(vals.Get(0).Name())
	for i := 1; i < vals.Len(); i++ {
		name := string(vals.Get(i).Name())
		for !strings.HasPrefix(name, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	return prefix[:strings.LastIndex(prefix, "_")+1]
}

// friendlyName is how users write a value: "local-only".
func friendlyName(ed protoreflect.EnumDescriptor, v protoreflect.EnumValueDescriptor) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(string(v.Name()), enumPrefix(ed))), "_", "-")
}

// friendlyValues lists the values a user may give, the unspecified one left out.
func friendlyValues(ed protoreflect.EnumDescriptor) []string {
	var out []string
	for i := 0; i < ed.Values().Len(); i++ {
		if v := ed.Values().Get(i); v.Number() != 0 {
			out = append(out, friendlyName(ed, v))
		}
	}
	return out
}

// parseEnum resolves a friendly or proto spelling of one of ed's values;
// what names the flag or field in the error.
func parseEnum(ed protoreflect.EnumDescriptor, what, s string) (protoreflect.EnumValueDescriptor, error) {
	name := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	prefix := enumPrefix(ed)
	if !strings.HasPrefix(name, prefix) {
		name = prefix + name
	}
	if v := ed.Values().ByName(protoreflect.Name(name)); v != nil && v.Number() != 0 {
		return v, nil
	}
	return nil, usagef("%s %q: use %s", what, s, strings.Join(friendlyValues(ed), ", "))
}

// normalizeEnums rewrites, in a JSON document for a message of type md,
// every enum value to its proto name, so protojson accepts friendly
// spellings; an unknown value is an error naming the field and the valid values.
func normalizeEnums(doc []byte, md protoreflect.MessageDescriptor) ([]byte, error) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, usagef("not JSON: %v", err)
	}
	if err := normalizeValue(v, md, ""); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func normalizeValue(v any, md protoreflect.MessageDescriptor, path string) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if fd == nil {
			continue // protojson reports unknown fields
		}
		field := strings.TrimPrefix(path+"."+string(fd.Name()), ".")
		items := []any{val}
		if list, ok := val.([]any); ok && fd.IsList() {
			items = list
		}
		for i, item := range items {
			switch fd.Kind() {
			case protoreflect.EnumKind:
				s, ok := item.(string)
				if !ok {
					continue
				}
				ev, err := parseEnum(fd.Enum(), field, s)
				if err != nil {
					return err
				}
				if fd.IsList() {
					items[i] = string(ev.Name())
				} else {
					obj[key] = string(ev.Name())
				}
			case protoreflect.MessageKind:
				if !fd.IsMap() {
					if err := normalizeValue(item, fd.Message(), field); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
