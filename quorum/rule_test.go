package quorum

import (
	"errors"
	"strings"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestThreshold(t *testing.T) {
	shared := func(r *meshnodev1.QuorumRule) *meshnodev1.QuorumRule { r.AllowSharedHosts = true; return r }
	tests := []struct {
		name string
		rule *meshnodev1.QuorumRule
		n    int
		want int // 0: error
	}{
		{"bft 4 (f=1)", bft(), 4, 3},
		{"bft 7 (f=2)", bft(), 7, 5},
		{"bft 10 (f=3)", bft(), 10, 7},
		{"bft 100 (f=33)", bft(), 100, 67},
		{"bft 5: f=1, quorums must share f+1", bft(), 5, 4},
		{"bft 6", bft(), 6, 4},
		{"bft explicit kind", &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}, 4, 3},
		{"bft 3 tolerates nobody", bft(), 3, 0},
		{"bft with shared hosts", shared(&meshnodev1.QuorumRule{}), 4, 0},
		{"bft with k", &meshnodev1.QuorumRule{K: 3}, 4, 0},
		{"2 of 3", kOfN(2), 3, 2},
		{"3 of 3", kOfN(3), 3, 3},
		{"2 of 4 is not a majority", kOfN(2), 4, 0},
		{"0 of 3", kOfN(0), 3, 0},
		{"4 of 3", kOfN(4), 3, 0},
		{"1 of 1", kOfN(1), 1, 1},
		{"2 of 3 shared hosts", shared(kOfN(2)), 3, 2},
		{"unanimous 3", unanimous(), 3, 3},
		{"unanimous 1", unanimous(), 1, 1},
		{"unanimous with k", &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS, K: 2}, 3, 0},
		{"unknown kind", &meshnodev1.QuorumRule{Kind: 99}, 4, 0},
		{"no voters", unanimous(), 0, 0},
		{"too many voters", unanimous(), MaxVoters + 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Threshold(tt.rule, tt.n)
			if tt.want == 0 {
				if !errors.Is(err, ErrInvalidProposal) {
					t.Fatalf("Threshold = %d, %v; want ErrInvalidProposal", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Threshold = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// The BFT threshold is the smallest q whose quorums intersect in f+1 voters.
func TestBFTThresholdIsMinimalSafeQuorum(t *testing.T) {
	for n := 4; n <= MaxVoters; n++ {
		f := (n - 1) / 3
		q, err := Threshold(nil, n)
		if err != nil {
			t.Fatal(err)
		}
		if 2*q-n < f+1 || 2*(q-1)-n >= f+1 || q > n-f {
			t.Fatalf("n=%d f=%d: q=%d is not the minimal quorum with f+1 overlap that n-f honest voters can reach", n, f, q)
		}
	}
}

func TestValidateProposal(t *testing.T) {
	ms := newMembers(4)
	tests := map[string]func(p *meshnodev1.Proposal){
		"no id":              func(p *meshnodev1.Proposal) { p.Id = "" },
		"long id":            func(p *meshnodev1.Proposal) { p.Id = strings.Repeat("x", MaxIDBytes+1) },
		"bad utf-8 id":       func(p *meshnodev1.Proposal) { p.Id = "\xff" },
		"no kind":            func(p *meshnodev1.Proposal) { p.Kind = "" },
		"wrong digest":       func(p *meshnodev1.Proposal) { p.PayloadDigest = PayloadDigest([]byte("x")) },
		"no digest":          func(p *meshnodev1.Proposal) { p.PayloadDigest = nil },
		"no selection":       func(p *meshnodev1.Proposal) { p.Selection = nil },
		"empty selection":    func(p *meshnodev1.Proposal) { p.Selection = &meshnodev1.VoterSelection{} },
		"capability and ids": func(p *meshnodev1.Proposal) { p.Selection.Capability = "payment.approve" },
		"duplicate ids":      func(p *meshnodev1.Proposal) { p.Selection.AgentIds[1] = p.Selection.AgentIds[0] },
		"count disagrees":    func(p *meshnodev1.Proposal) { p.Selection.Count = 7 },
		"3 bft voters":       func(p *meshnodev1.Proposal) { p.Selection.AgentIds = p.Selection.AgentIds[:3] },
		"k of n without count": func(p *meshnodev1.Proposal) {
			p.Rule = kOfN(2)
			p.Selection = &meshnodev1.VoterSelection{Capability: "c"}
		},
		"no deadline": func(p *meshnodev1.Proposal) { p.Deadline = nil },
		"deadline before created": func(p *meshnodev1.Proposal) {
			p.Deadline = p.CreatedAt
		},
		"unknown on_no_quorum": func(p *meshnodev1.Proposal) { p.OnNoQuorum = 7 },
	}
	if err := ValidateProposal(newProposal("p1", bft(), ms)); err != nil {
		t.Fatalf("valid proposal: %v", err)
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			p := newProposal("p1", bft(), ms)
			mutate(p)
			if err := ValidateProposal(p); !errors.Is(err, ErrInvalidProposal) {
				t.Fatalf("ValidateProposal = %v, want ErrInvalidProposal", err)
			}
		})
	}
	if err := ValidateProposal(nil); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("ValidateProposal(nil) = %v", err)
	}
}

func TestSelectVoters(t *testing.T) {
	sixOnThreeHosts := []member{
		newMember("a/1", "a"), newMember("a/2", "a"), newMember("b/1", "b"),
		newMember("b/2", "b"), newMember("c/1", "c"), newMember("c/2", "c"),
	}
	five := newMembers(5)
	noKey := newMember("n09/voter", "n09")
	noKey.PublicKey = nil
	sameKey := newMember("n08/voter", "n08")
	sameKey.PublicKey = five[0].PublicKey
	capSel := func(n uint32) *meshnodev1.VoterSelection {
		return &meshnodev1.VoterSelection{Capability: "payment.approve", Count: n}
	}
	tests := []struct {
		name       string
		sel        *meshnodev1.VoterSelection
		rule       *meshnodev1.QuorumRule
		candidates []member
		want       []string
		wantErr    error
	}{
		{"bft default count picks first 4 hosts", capSel(0), bft(), five, []string{"n00/voter", "n01/voter", "n02/voter", "n03/voter"}, nil},
		{"skips voters without or with reused keys", capSel(4), bft(), append([]member{noKey, sameKey}, five...), []string{"n01/voter", "n02/voter", "n03/voter", "n04/voter"}, nil},
		{"one per host", capSel(3), kOfN(2), sixOnThreeHosts, []string{"a/1", "b/1", "c/1"}, nil},
		{"too few hosts for bft", capSel(4), bft(), sixOnThreeHosts, nil, ErrTooFewHosts},
		{"shared hosts allowed", capSel(4), &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 3, AllowSharedHosts: true}, sixOnThreeHosts, []string{"a/1", "a/2", "b/1", "b/2"}, nil},
		{"too few voters with shared hosts", capSel(7), &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS, AllowSharedHosts: true}, sixOnThreeHosts, nil, ErrTooFewVoters},
		{"explicit ids", &meshnodev1.VoterSelection{AgentIds: []string{"n04/voter", "n00/voter", "n02/voter", "n01/voter"}}, bft(), five, []string{"n00/voter", "n01/voter", "n02/voter", "n04/voter"}, nil},
		{"explicit ids on shared hosts", &meshnodev1.VoterSelection{AgentIds: []string{"a/1", "a/2", "b/1", "c/1"}}, bft(), sixOnThreeHosts, nil, ErrTooFewHosts},
		{"explicit id missing", &meshnodev1.VoterSelection{AgentIds: []string{"n00/voter", "n01/voter", "n02/voter", "gone/voter"}}, bft(), five, nil, ErrTooFewVoters},
		{"invalid rule", capSel(2), kOfN(1), five, nil, ErrInvalidProposal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SelectVoters(tt.sel, tt.rule, votersOf(tt.candidates))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("SelectVoters = %v, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, v := range got {
				ids = append(ids, v.AgentID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("SelectVoters = %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestCheckElectorate(t *testing.T) {
	ms := newMembers(4)
	dup := append(votersOf(ms), ms[0].Voter)
	sameKey := votersOf(ms)
	sameKey[1].PublicKey = sameKey[0].PublicKey
	badKey := votersOf(ms)
	badKey[2].PublicKey = badKey[2].PublicKey[:16]
	shared := votersOf(ms)
	shared[3].Node = shared[0].Node
	noNode := votersOf(ms)
	noNode[0].Node = ""
	for name, tt := range map[string]struct {
		voters []Voter
		want   error
	}{
		"duplicate agent": {dup, ErrInvalidElectorate},
		"shared key":      {sameKey, ErrInvalidElectorate},
		"bad key":         {badKey, ErrInvalidElectorate},
		"shared host":     {shared, ErrTooFewHosts},
		"no node":         {noNode, ErrInvalidElectorate},
	} {
		if err := CheckElectorate(nil, tt.voters); !errors.Is(err, tt.want) {
			t.Errorf("%s: CheckElectorate = %v, want %v", name, err, tt.want)
		}
	}
	if err := CheckElectorate(nil, votersOf(ms)); err != nil {
		t.Fatal(err)
	}
}
