package pki

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// JoinCallFunc sends body, a marshalled JoinRequest, to seed over the join
// ALPN with tlsConf (JoinClientTLS of the token) and returns the answer, a
// marshalled JoinResponse. Errors are gRPC status errors: their code tells a
// refusal (final) from a seed that could not answer (retried). node passes
// the transport's join dial; pki does not know the network.
type JoinCallFunc func(ctx context.Context, seed string, tlsConf *tls.Config, body []byte) ([]byte, error)

// JoinConfig configures Join. Zero values mean the documented defaults.
type JoinConfig struct {
	// Seeds are the addresses asked for a certificate, in turn. Required.
	Seeds []string
	// Token is the join token printed by `meshnode token create`. Required.
	Token string
	// Name is the joining node's name. Required.
	Name string
	// Server asks to join as a Raft server; the token must allow it.
	Server bool
	// DataDir is where the credentials are saved before Join returns them.
	// Empty: they are not saved (tests).
	DataDir string
	// Call dials one seed. Required.
	Call JoinCallFunc
	// AttemptTimeout bounds one call to one seed. Zero means 10s.
	AttemptTimeout time.Duration
	// MinBackoff is the wait after a round in which no seed answered; it
	// doubles every round up to MaxBackoff. Zero means 200ms and 5s: seeds
	// that are not up yet are normal at cluster start, and a joiner should
	// notice them soon after they come up.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Now and After are the clock; nil means time.Now and time.After.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports the first missing or inconsistent field.
func (c *JoinConfig) Validate() error {
	switch {
	case len(c.Seeds) == 0:
		return errors.New("pki: JoinConfig.Seeds is required")
	case c.Token == "":
		return errors.New("pki: JoinConfig.Token is required")
	case c.Call == nil:
		return errors.New("pki: JoinConfig.Call is required")
	case c.AttemptTimeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0:
		return errors.New("pki: JoinConfig timeouts must not be negative")
	case c.MaxBackoff != 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("pki: JoinConfig.MinBackoff %s exceeds MaxBackoff %s", c.MinBackoff, c.MaxBackoff)
	}
	return ValidateName(c.Name)
}

func (c JoinConfig) withDefaults() JoinConfig {
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Join is the joining side of the join protocol: it asks the seeds, in
// turn, for a node certificate with a fresh key, retrying with backoff
// while none can answer, and saves the credentials it gets to DataDir. A
// refusal (a bad, used or expired token, a revoked name; see
// IsFinalJoinError) is final and returned at once, as is a bad answer. It
// returns when ctx ends, wrapping ctx's error. CA.Join is the server side.
func Join(ctx context.Context, cfg JoinConfig) (*Credentials, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	tok, err := ParseToken(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("pki: join token: %w", err)
	}
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, fmt.Errorf("pki: generating node key: %w", err)
	}
	req, err := NewJoinRequest(cfg.Token, cfg.Name, key)
	if err != nil {
		return nil, fmt.Errorf("pki: join request: %w", err)
	}
	if cfg.Server {
		req.Role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
	} else if tok.Role == meshnodev1.JoinRole_JOIN_ROLE_SERVER {
		// The token allows either role and the node asks for one; an
		// operator who made a server token most likely forgot the flag.
		log.Warn("the join token admits a Raft server, but this node runs without --server: it joins as a client, and restarting it with --server later will not make it one (the token is used up); to make it a server, stop it, remove its data directory and join again with a new server token and --server")
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding join request: %w", err)
	}
	tlsConf := JoinClientTLS(tok)
	backoff := cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		for _, seed := range cfg.Seeds {
			cctx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
			out, err := cfg.Call(cctx, seed, tlsConf, body)
			cancel()
			if err == nil {
				return acceptJoin(cfg, tok, key, seed, out)
			}
			if IsFinalJoinError(err) {
				return nil, fmt.Errorf("join via %s refused: %w", seed, err)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("join: no seed answered: %w", ctx.Err())
			}
			log.Warn("join attempt failed; will retry", "seed", seed, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("join: no seed answered: %w", ctx.Err())
		case <-cfg.After(backoff):
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// acceptJoin checks seed's answer and saves the credentials it carries.
func acceptJoin(cfg JoinConfig, tok *Token, key crypto.Signer, seed string, out []byte) (*Credentials, error) {
	resp := &meshnodev1.JoinResponse{}
	if err := proto.Unmarshal(out, resp); err != nil {
		return nil, fmt.Errorf("join via %s: bad answer: %w", seed, err)
	}
	creds, err := CredentialsFromJoin(tok, cfg.Name, key, resp, cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("join via %s: %w", seed, err)
	}
	if cfg.DataDir != "" {
		if err := creds.Save(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	cfg.Logger.Info("joined the cluster: certificate issued", "seed", seed, "trust_domain", tok.TrustDomain)
	return creds, nil
}

// IsFinalJoinError reports whether a join call's error is a refusal that
// asking again, here or at another seed, cannot change: the token or the
// request is wrong (the CA's codes, see toStatus). Anything else (a seed
// down, no leader yet, a timeout) may pass.
func IsFinalJoinError(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition, codes.Unauthenticated:
		return true
	}
	return false
}
