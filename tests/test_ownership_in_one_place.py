"""Every ownership decision is taken in `tokensvc/ownership.py`: the package's source is read, and
the words of ownership appear nowhere else in code; and what the rule hands on of LiveKit's
events passes its intruder check, track events included.

The rule, on the code of every module of `tokensvc` (docstrings and comments are prose, not
decisions; `tokensvc/testing/`, the emulator, plays LiveKit and is exempt):

- the room-metadata owner key: the string `auth_id` and the name `OWNER_KEY` only in
  ownership.py, with the readers of a room's owner (`room_owner`, `holder_of`);
- the tenant attribute: the string `tokensvc.tenant` in no module (it is built once, in roles.py,
  as RESERVED_PREFIX + "tenant"); the name `TENANT_ATTRIBUTE` defined in roles.py, read only in
  ownership.py, and written only in livekit/minting.py, which puts it into a token;
- a tenant's own room names: `own_name` is called on the ownership rule (`<...>.ownership`),
  except inside ownership.py, which asks the names (names.py), and the call sites listed in
  PENDING.
"""

import ast
import json
from pathlib import Path

from support.tokens import BODY, signed_webhook
from tokensvc.context import service_state

PACKAGE = Path(__file__).resolve().parent.parent / "tokensvc"
EXEMPT = ("testing",)
OWNERSHIP = "ownership.py"
#: Words of the owner key, allowed only in ownership.py.
OWNER_WORDS = {"OWNER_KEY", "room_owner", "holder_of"}
#: Where the tenant attribute's name may appear: its definition and the one writer.
ATTRIBUTE_AT = {"roles.py", "livekit/minting.py", OWNERSHIP}
#: Callers of `own_name` on the names rather than on the ownership rule: none.
PENDING: set[str] = set()


def modules():
    """(path relative to the package, parsed module) of each module outside EXEMPT."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.split("/")[0] not in EXEMPT:
            yield relative, ast.parse(path.read_text(encoding="utf-8"))


def docstrings(tree) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and its functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def strings(tree) -> list[str]:
    """Every string in the code of a module, docstrings left out."""
    prose = docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
    ]


def names(tree) -> set[str]:
    """Every name a module uses, defines, imports or reads as an attribute."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name.rsplit(".", 1)[-1])
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
    return found


def test_the_owner_key_is_read_and_written_only_in_ownership():
    """`auth_id`, OWNER_KEY and the owner readers: in no module but ownership.py."""
    found = {
        module
        for module, tree in modules()
        if any("auth_id" in text for text in strings(tree)) or names(tree) & OWNER_WORDS
    }
    assert found == {OWNERSHIP}


def test_the_tenant_attribute_is_defined_once_and_read_only_in_ownership():
    """`tokensvc.tenant` is spelled in no module's code; TENANT_ATTRIBUTE appears only in
    roles.py (defined), livekit/minting.py (written into a token) and ownership.py (read)."""
    spelled = {
        module
        for module, tree in modules()
        if any("tokensvc.tenant" in text for text in strings(tree))
    }
    assert spelled == set()
    used = {module for module, tree in modules() if "TENANT_ATTRIBUTE" in names(tree)}
    assert used == ATTRIBUTE_AT


def test_own_names_are_asked_of_the_ownership_rule():
    """Every `own_name(...)` call outside ownership.py is made on `<...>.ownership`."""
    elsewhere = set()
    for module, tree in modules():
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "own_name"
            ):
                continue
            receiver = node.func.value
            asked = receiver.attr if isinstance(receiver, ast.Attribute) else None
            if asked != "ownership" and module != OWNERSHIP:
                elsewhere.add(module)
    assert elsewhere == PENDING


def test_a_track_event_of_another_tenants_participant_is_not_handed_on(app, tenants):
    """The rule hands on (`forward`) the events of acme's room with acme's own room name, but
    no event of a participant whose tokensvc.tenant names globex: not its track events, not
    its leave."""
    client = app.test_client()
    assert tenants.ask(client, "acme", room=BODY["room_name"]).status_code == 200
    ownership = service_state(app).issuer.ownership
    handed = []
    ownership.forward = lambda holder, event, room_name: handed.append(
        (holder, event.id, room_name)
    )
    owner = json.dumps({"auth_id": "acme"})
    track = {"sid": "TR_1", "type": "VIDEO", "source": "CAMERA", "name": "cam"}
    intruder = {"identity": "mallory", "sid": "PA_9", "attributes": {"tokensvc.tenant": "globex"}}
    own = {"identity": "alice", "sid": "PA_1", "attributes": {"tokensvc.tenant": "acme"}}
    events = [
        ("track_published", intruder, "EV_1"),
        ("track_unpublished", intruder, "EV_2"),
        ("participant_left", intruder, "EV_3"),
        ("track_published", own, "EV_4"),
    ]
    for kind, participant, event_id in events:
        body, headers = signed_webhook(
            kind,
            BODY["room_name"],
            metadata=owner,
            participant=participant,
            track=track,
            event_id=event_id,
        )
        assert client.post("/livekit/webhook", data=body, headers=headers).status_code == 200
    assert handed == [("acme", "EV_4", BODY["room_name"])]
