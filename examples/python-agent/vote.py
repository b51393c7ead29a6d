"""Quorum voting for agent.py: the vote key, the signed vote, the journal.

Everything here matches the Go SDK byte for byte (quorum/sign.go,
agent/keys.go, agent/votejournal.go): a vote signed here verifies with
quorum.VerifyVote, and a key file written by either can be read by the other.

Signing needs an ed25519 implementation, which the standard library lacks:
this module uses the `cryptography` package (Debian/Ubuntu:
`apt-get install python3-cryptography`; elsewhere `pip install cryptography`).
Without it the encodings still work, and `require_ed25519` says what to
install.

    python3 vote.py sign --key vote.key < request.json   # used by the tests
"""

import base64
import hashlib
import json
import os
import struct
import sys
import tempfile
import threading

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
except ImportError:  # voting is optional; serving and calling need none of it
    serialization = Ed25519PrivateKey = None

INSTALL_HINT = ("voting needs an ed25519 implementation: install the Python "
                "`cryptography` package (Debian/Ubuntu: apt-get install python3-cryptography; "
                "elsewhere: pip install cryptography)")

# Domain-separation contexts, quorum.VoteContext and quorum.TermsContext.
VOTE_CONTEXT = b"meshnode/quorum/vote/v1"
TERMS_CONTEXT = b"meshnode/quorum/terms/v1"
MAX_REASON_BYTES = 1024  # quorum.MaxReasonBytes

# proto3 JSON writes enums by name; the signature covers their numbers
# (proto/meshnode/v1/quorum.proto).
CHOICES = {"CHOICE_UNSPECIFIED": 0, "CHOICE_APPROVE": 1, "CHOICE_REJECT": 2, "CHOICE_ABSTAIN": 3}
RULE_KINDS = {"QUORUM_RULE_KIND_UNSPECIFIED": 0, "QUORUM_RULE_KIND_BFT": 1,
              "QUORUM_RULE_KIND_K_OF_N": 2, "QUORUM_RULE_KIND_UNANIMOUS": 3}


class VoteError(Exception):
    """The key or the journal cannot be used; no vote is cast."""


def require_ed25519():
    if Ed25519PrivateKey is None:
        raise VoteError(INSTALL_HINT)


def _get(msg, camel, snake, default=None):
    """proto3 JSON may use lowerCamelCase or the proto field name, and omits
    fields holding their zero value."""
    v = msg.get(camel, msg.get(snake))
    return default if v is None else v


def enum_number(value, names):
    """An enum from proto3 JSON (its name, or a number) as its number."""
    if isinstance(value, int):
        return value
    if value in names:
        return names[value]
    raise ValueError("unknown enum value %r" % (value,))


# --- The encoding (quorum/sign.go) -------------------------------------------

class Encoder:
    """Length-prefixed encoding: strings and bytes as a 4-byte big-endian
    length then the bytes, numbers as 4 bytes big-endian. Unlike
    concatenation it is injective, so one field cannot bleed into the next."""

    def __init__(self):
        self.parts = []

    def bytes(self, b):
        self.parts.append(struct.pack(">I", len(b)) + b)

    def str(self, s):
        self.bytes(s.encode("utf-8"))

    def u32(self, v):
        self.parts.append(struct.pack(">I", v))

    def value(self):
        return b"".join(self.parts)


def terms_digest(kind, rule, electorate):
    """quorum.TermsDigest: SHA-256 over kind, the rule exactly as written
    (an unset kind stays 0) and the electorate in the order given."""
    e = Encoder()
    e.bytes(TERMS_CONTEXT)
    e.str(kind)
    e.u32(enum_number(_get(rule, "kind", "kind", 0), RULE_KINDS))
    e.u32(int(_get(rule, "k", "k", 0)))
    e.u32(1 if _get(rule, "allowSharedHosts", "allow_shared_hosts", False) else 0)
    e.u32(len(electorate))
    for v in electorate:
        e.str(_get(v, "agentId", "agent_id", ""))
        e.str(_get(v, "node", "node", ""))
    return hashlib.sha256(e.value()).digest()


def vote_message(v):
    """quorum.VoteMessage: the bytes a vote's signature covers. v holds raw
    bytes for the digests and numbers for round and choice."""
    e = Encoder()
    e.bytes(VOTE_CONTEXT)
    e.str(v["clusterId"])
    e.str(v["proposalId"])
    e.bytes(v["payloadDigest"])
    e.bytes(v["termsDigest"])
    e.u32(v["round"])
    e.u32(v["choice"])
    e.str(v["voterAgentId"])
    e.str(v["voterNode"])
    e.str(v["reason"])
    return e.value()


def truncate_utf8(s, n=MAX_REASON_BYTES):
    """Cut s to at most n UTF-8 bytes without splitting a character, like
    quorum.NewVote does with a reason."""
    b = s.encode("utf-8")
    if len(b) <= n:
        return s
    return b[:n].decode("utf-8", "ignore")


def new_vote(cluster_id, proposal, choice, reason, voter_id, node, key):
    """quorum.NewVote: the signed vote on proposal (proto3 JSON, as the Serve
    stream delivers it), in proto3 JSON ready for QuorumService/Vote. The
    payload digest is computed from the payload the voter was shown, never
    taken from the request."""
    payload = base64.b64decode(proposal.get("payload") or "")
    v = {
        "clusterId": cluster_id,
        "proposalId": proposal.get("id", ""),
        "payloadDigest": hashlib.sha256(payload).digest(),
        "termsDigest": terms_digest(proposal.get("kind", ""), proposal.get("rule") or {},
                                    proposal.get("electorate") or []),
        "round": int(proposal.get("round", 0)),
        "choice": choice,
        "voterAgentId": voter_id,
        "voterNode": node,
        "reason": truncate_utf8(reason),
    }
    v["signature"] = key.sign(vote_message(v))
    for f in ("payloadDigest", "termsDigest", "signature"):
        v[f] = base64.b64encode(v[f]).decode()
    return v


# --- The key and the state directory (agent/keys.go, agent/votejournal.go) ---

def state_dir(name, socket_path):
    """The Go SDK's default state directory, so the Python agent and a Go
    agent of the same name on the same node agree on where a voter lives."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    tag = hashlib.sha256(os.path.abspath(socket_path).encode()).hexdigest()[:8]
    return os.path.join(base, "meshnode", "agents", "%s-%s" % (name, tag))


def _create_file(path, data):
    """Write data to a new file at path, mode 0600, atomically and durably:
    temp file, fsync, hard link (which fails if path exists, so of two
    writers exactly one wins), fsync of the directory. Returns False if
    path already existed."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = None
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True
    finally:
        if fd is not None:
            os.close(fd)
        os.unlink(tmp)


def load_or_create_key(path):
    """The vote key at path (PKCS#8 PEM, the format of the Go SDK and of
    `openssl genpkey -algorithm ed25519`), created on first use. A key
    another user can read is refused: they could vote as this agent."""
    require_ed25519()
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        _create_file(path, pem)  # if another process won the race, use its key
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise VoteError("key file %s has mode %#o: it must be readable by its owner only; run chmod 600 %s"
                        % (path, mode, path))
    with open(path, "rb") as f:
        data = f.read(64 << 10)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as e:
        raise VoteError("key file %s: %s" % (path, e))
    if not isinstance(key, Ed25519PrivateKey):
        raise VoteError("key file %s holds a %s, want an ed25519 key" % (path, type(key).__name__))
    return key


def public_key_b64(key):
    """The raw 32-byte public key, base64: RegisterRequest.votePublicKey."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


class Journal:
    """One vote per proposal. A voter asked again about a proposal id (another
    round, electorate or node, or after a restart) answers with the vote it
    already signed, so nobody can keep asking until enough approvals come
    in. Each vote is on disk (fsync'd) before it is sent."""

    def __init__(self, directory):
        self.dir = directory
        self.lock = threading.Lock()
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def path(self, proposal_id):
        return os.path.join(self.dir, hashlib.sha256(proposal_id.encode()).hexdigest() + ".vote")

    def get(self, proposal_id):
        try:
            with open(self.path(proposal_id), "rb") as f:
                v = json.loads(f.read(64 << 10))
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise VoteError("journalled vote %s is damaged (%s); move it aside only if this agent "
                            "never voted on %r" % (self.path(proposal_id), e, proposal_id))
        if v.get("proposalId") != proposal_id:
            raise VoteError("journalled vote %s is for %r, not %r"
                            % (self.path(proposal_id), v.get("proposalId"), proposal_id))
        return v

    def vote_once(self, proposal_id, sign):
        """The vote that stands for proposal_id: the journalled one, or the
        one sign() returns, journalled first. sign is not called for a
        proposal already voted on."""
        with self.lock:
            v = self.get(proposal_id)
            if v is not None:
                return v
            v = sign()
            if not _create_file(self.path(proposal_id), json.dumps(v, sort_keys=True).encode()):
                return self.get(proposal_id)  # another process of this agent won
            return v


# --- The example's decision rule ---------------------------------------------

def decide(proposal, choice="approve", max_amount=None):
    """(choice number, reason) for a proposal: `choice` for every payload,
    except that with max_amount a JSON object payload whose "amount" exceeds
    it (or is not a number) is rejected."""
    if max_amount is not None:
        try:
            doc = json.loads(base64.b64decode(proposal.get("payload") or ""))
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "amount" in doc:
            amount = doc["amount"]
            if isinstance(amount, bool) or not isinstance(amount, (int, float)):
                return CHOICES["CHOICE_REJECT"], "amount %r is not a number" % (amount,)
            if amount > max_amount:
                return CHOICES["CHOICE_REJECT"], "amount %s exceeds the limit %s" % (amount, max_amount)
    if choice == "reject":
        return CHOICES["CHOICE_REJECT"], "agent.py rejects every proposal (--vote reject)"
    return CHOICES["CHOICE_APPROVE"], "agent.py approves (--vote approve)"


def _sign_main(argv):
    """`vote.py sign --key FILE`: reads {"clusterId", "proposal", "choice",
    "reason", "voterAgentId", "voterNode"} as JSON on stdin and prints
    {"vote", "publicKey"}. The Go tests check it against quorum.NewVote."""
    import argparse
    p = argparse.ArgumentParser(prog="vote.py sign")
    p.add_argument("--key", required=True, help="vote key file, created if missing")
    args = p.parse_args(argv)
    try:
        key = load_or_create_key(args.key)
    except VoteError as e:
        print("vote.py: %s" % e, file=sys.stderr)
        return 2
    req = json.load(sys.stdin)
    v = new_vote(req.get("clusterId", ""), req.get("proposal") or {},
                 enum_number(req.get("choice", 0), CHOICES), req.get("reason", ""),
                 req.get("voterAgentId", ""), req.get("voterNode", ""), key)
    json.dump({"vote": v, "publicKey": public_key_b64(key)}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["sign"]:
        print("usage: vote.py sign --key FILE < request.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(_sign_main(sys.argv[2:]))
