package operator

import (
	"errors"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

func TestValidateRecord(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*meshnodev1.OperatorRecord)
		want   string // "" = valid
	}{
		{"valid", func(*meshnodev1.OperatorRecord) {}, ""},
		{"no roles", func(r *meshnodev1.OperatorRecord) { r.Roles = nil }, ""},
		{"no expiry", func(r *meshnodev1.OperatorRecord) { r.NotAfterUnixNano = 0 }, ""},
		{"email name", func(r *meshnodev1.OperatorRecord) { r.Name = "ann.o-k_1@example.com" }, ""},
		{"empty name", func(r *meshnodev1.OperatorRecord) { r.Name = "" }, "must be 1-64 bytes"},
		{"long name", func(r *meshnodev1.OperatorRecord) { r.Name = strings.Repeat("a", 65) }, "must be 1-64 bytes"},
		{"space in name", func(r *meshnodev1.OperatorRecord) { r.Name = "a b" }, "is not a letter"},
		{"control in name", func(r *meshnodev1.OperatorRecord) { r.Name = "a\x00" }, "is not a letter"},
		{"empty issuer", func(r *meshnodev1.OperatorRecord) { r.Issuer = "" }, "issuer"},
		{"short key", func(r *meshnodev1.OperatorRecord) { r.PublicKey = r.PublicKey[:31] }, "public key is 31 bytes"},
		{"unknown role", func(r *meshnodev1.OperatorRecord) { r.Roles = []string{"root"} }, `unknown role "root"`},
		{"repeated role", func(r *meshnodev1.OperatorRecord) { r.Roles = []string{"policy", "policy"} }, "listed twice"},
		{"too many roles", func(r *meshnodev1.OperatorRecord) { r.Roles = make([]string, MaxRoles+1) }, "roles, at most"},
		{"empty window", func(r *meshnodev1.OperatorRecord) { r.NotAfterUnixNano = r.NotBeforeUnixNano }, "is not after not_before"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rec("ann", RolePolicy)
			r.Issuer = "root"
			tc.modify(r)
			err := ValidateRecord(r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateRecord: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ValidateRecord = %v, want ErrBadRecord containing %q", err, tc.want)
			}
		})
	}
}

func TestSignRecordRoundTrip(t *testing.T) {
	in := rec("ann", RolePolicy, RoleAuditor)
	in.Issuer = "someone else" // SignRecord sets it
	sr := sign(t, "alice", in)
	if in.GetIssuer() != "someone else" {
		t.Fatal("SignRecord modified its argument")
	}
	b, err := proto.Marshal(sr)
	if err != nil {
		t.Fatal(err)
	}
	sr2, got, err := DecodeSignedRecord(b)
	if err != nil {
		t.Fatalf("DecodeSignedRecord: %v", err)
	}
	want := proto.CloneOf(in)
	want.Issuer = "alice"
	if !proto.Equal(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	if _, err := VerifyRecord(testPub("alice"), sr2); err != nil {
		t.Fatalf("VerifyRecord with the issuer's key: %v", err)
	}
	if _, err := VerifyRecord(testPub("bob"), sr2); !errors.Is(err, ErrBadRecordSignature) {
		t.Fatalf("VerifyRecord with another key = %v, want ErrBadRecordSignature", err)
	}
	// The signature is domain-separated: the raw record bytes, signed
	// without the context, do not verify.
	sr2.Signature = ed25519Sign("alice", sr2.GetRecord())
	if _, err := VerifyRecord(testPub("alice"), sr2); !errors.Is(err, ErrBadRecordSignature) {
		t.Fatalf("VerifyRecord of an undomained signature = %v, want ErrBadRecordSignature", err)
	}
}

func TestSignRecordRefuses(t *testing.T) {
	if _, err := SignRecord("alice", testKey("alice")[:10], rec("ann")); err == nil {
		t.Error("SignRecord accepted a truncated key")
	}
	if _, err := SignRecord("alice", testKey("alice"), nil); !errors.Is(err, ErrBadRecord) {
		t.Errorf("SignRecord(nil) = %v, want ErrBadRecord", err)
	}
	if _, err := SignRecord("al ice", testKey("alice"), rec("ann")); !errors.Is(err, ErrBadRecord) {
		t.Errorf("SignRecord with a bad issuer name = %v, want ErrBadRecord", err)
	}
}

func TestDecodeSignedRecordRefuses(t *testing.T) {
	good, _ := proto.Marshal(sign(t, "alice", rec("ann")))
	tests := map[string][]byte{
		"too large":   make([]byte, MaxSignedRecordBytes+1),
		"not proto":   []byte{0xff, 0xff, 0xff},
		"empty":       nil,
		"bad record":  mustMarshal(t, &meshnodev1.SignedOperatorRecord{Record: []byte{0x0a, 0x05}}),
		"huge record": mustMarshal(t, &meshnodev1.SignedOperatorRecord{Record: make([]byte, MaxRecordBytes+1)}),
		"truncated":   good[:len(good)-3],
	}
	for name, b := range tests {
		if _, _, err := DecodeSignedRecord(b); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: DecodeSignedRecord = %v, want ErrBadRecord", name, err)
		}
	}
}

func TestCheckValidAt(t *testing.T) {
	r := rec("ann")
	tests := []struct {
		at   time.Time
		want error
	}{
		{t0, nil},
		{t0.Add(-time.Hour), nil},
		{t0.Add(-time.Hour - 1), ErrRecordNotYetValid},
		{t0.Add(time.Hour - 1), nil},
		{t0.Add(time.Hour), ErrRecordExpired},
	}
	for _, tc := range tests {
		if err := CheckValidAt(r, tc.at); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("CheckValidAt(%s) = %v, want %v", tc.at, err, tc.want)
		}
	}
	open := &meshnodev1.OperatorRecord{Name: "ann"}
	if err := CheckValidAt(open, time.Unix(0, 1<<62)); err != nil {
		t.Errorf("a record without bounds: %v", err)
	}
}

func TestCheckReplaces(t *testing.T) {
	v := func(name string, version uint64) *meshnodev1.OperatorRecord {
		r := rec(name)
		r.Version = version
		return r
	}
	tests := []struct {
		name       string
		prev, next *meshnodev1.OperatorRecord
		want       error
	}{
		{"first", nil, v("ann", 0), nil},
		{"newer", v("ann", 1), v("ann", 2), nil},
		{"same", v("ann", 2), v("ann", 2), ErrStaleRecord},
		{"older", v("ann", 3), v("ann", 2), ErrStaleRecord},
		{"other name", v("ann", 1), v("bob", 2), ErrBadRecord},
	}
	for _, tc := range tests {
		err := CheckReplaces(tc.prev, tc.next)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: CheckReplaces = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
