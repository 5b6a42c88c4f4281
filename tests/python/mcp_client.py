"""Drive Vesta's MCP door with the official Python MCP SDK (`mcp` on PyPI).

Over streamable HTTP (--url and --token, a token whose audience includes the
MCP resource) or over stdio (--stdio-command: `vesta mcp` with VESTA_MCP_TOKEN
in its environment). --mode picks the protocol generation over HTTP: `auto`
(the SDK probes server/discover and speaks the stateless 2026-07-28 revision)
or `legacy` (the initialize handshake: a 2025-11-25 session); --expect-version
is the revision the connection must have negotiated. Prints one "ok ..." line
per check; exits 1 at the first failed check. Used by tests/it/mcp.rs.
"""

import argparse
import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

PASSED = 0


class CheckFailed(Exception):
    pass


def expect(cond, what, detail=""):
    global PASSED
    if not cond:
        raise CheckFailed(f"{what}: {detail}")
    PASSED += 1
    print(f"ok {PASSED:2d} {what}", flush=True)


def structured(result):
    return result.structured_content or {}


def text_of(result):
    return " ".join(getattr(c, "text", "") for c in result.content)


def client_for(args, token=None, http=None):
    if args.stdio_command:
        env = dict(os.environ)
        env["VESTA_MCP_TOKEN"] = token or args.token
        params = StdioServerParameters(command=args.stdio_command, args=["mcp"], env=env)
        return Client(params, cache=None)
    http = http or bearer_client(token or args.token)
    return Client(streamable_http_client(args.url, http_client=http), mode=args.mode, cache=None)


def bearer_client(token):
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                              timeout=httpx2.Timeout(30.0, read=60.0))


def check_negotiated(args, c):
    """The revision the connection negotiated, from the initialize (or discover) result."""
    if not args.expect_version:
        return
    s = c.session
    if args.mode == "legacy":
        got = s.initialize_result.protocol_version if s.initialize_result else None
        expect(got == args.expect_version and s.discover_result is None,
               f"initialize negotiated {args.expect_version} (session mode)", got)
    else:
        supported = s.discover_result.supported_versions if s.discover_result else []
        expect(s.initialize_result is None and c.protocol_version == args.expect_version
               and args.expect_version in supported,
               f"server/discover negotiated {args.expect_version} (stateless, no initialize)",
               (c.protocol_version, supported))


async def list_all_resources(c):
    """Every page of resources/list: (uris, pages)."""
    uris, pages, cursor = [], 0, None
    while True:
        r = await c.list_resources(cursor=cursor)
        pages += 1
        uris += [str(x.uri) for x in r.resources]
        cursor = r.next_cursor
        if not cursor or pages >= 50:
            return uris, pages


async def admin_checks(args):
    # One family name per mode, so runs against the same server stay apart.
    family = "Mcpson" if args.mode == "auto" else "Mcpsession"
    async with client_for(args) as c:
        check_negotiated(args, c)
        tools = (await c.list_tools()).tools
        names = {t.name for t in tools}
        wanted = {"fhir_read", "fhir_search", "fhir_create", "fhir_update", "fhir_patch",
                  "fhir_delete", "fhir_history", "fhir_transaction", "fhir_validate",
                  "fhir_capabilities", "patient_summary", "resolve", "find_tools"}
        expect(wanted <= names, "tools/list names every tool", sorted(names))
        bad = [t.name for t in tools if not (t.input_schema and t.output_schema and t.annotations)]
        expect(not bad, "every tool has inputSchema, outputSchema and annotations", bad)
        by = {t.name: t for t in tools}
        expect(by["fhir_read"].annotations.read_only_hint is True
               and by["fhir_delete"].annotations.destructive_hint is True,
               "annotations: fhir_read read-only, fhir_delete destructive")

        r = await c.call_tool("fhir_create", {"resource": {
            "resourceType": "Patient", "name": [{"family": family, "given": ["Ada"]}],
            "birthDate": "1970-05-06"}})
        pid = structured(r).get("id")
        expect(not r.is_error and structured(r).get("resourceType") == "Patient" and pid,
               "fhir_create Patient -> stored Patient with an id", text_of(r))

        r = await c.call_tool("fhir_read", {"type": "Patient", "id": pid})
        expect(not r.is_error and structured(r).get("id") == pid
               and structured(r)["name"][0]["family"] == family,
               "fhir_read returns it (structuredContent is the FHIR resource)", text_of(r))
        expect(family in text_of(r), "fhir_read has a short text rendering", text_of(r))

        r = await c.call_tool("fhir_search", {"type": "Patient", "params": {"family": family}})
        refs = [e["reference"] for e in structured(r).get("entries", [])]
        expect(not r.is_error and refs == [f"Patient/{pid}"],
               f"fhir_search family={family} -> that patient only (compact entries)", structured(r))

        r = await c.call_tool("fhir_search", {"type": "Patient", "count": 1})
        cursor = structured(r).get("nextCursor")
        expect(not r.is_error and structured(r).get("count") == 1 and cursor,
               "fhir_search count=1 -> one entry and a nextCursor", structured(r))
        r2 = await c.call_tool("fhir_search", {"type": "Patient", "cursor": cursor})
        first = structured(r)["entries"][0]["reference"]
        second = [e["reference"] for e in structured(r2).get("entries", [])]
        expect(not r2.is_error and second and first not in second,
               "fhir_search with the cursor -> the next page", structured(r2))

        r = await c.call_tool("fhir_delete", {"type": "Patient", "id": pid})
        expect(not r.is_error and structured(r).get("dryRun") is True,
               "fhir_delete without confirm -> dry run", text_of(r))
        r = await c.call_tool("fhir_read", {"type": "Patient", "id": pid})
        expect(not r.is_error and structured(r).get("id") == pid,
               "after the dry run the patient is still there", text_of(r))

        r = await c.call_tool("fhir_read", {"type": "Patient", "id": "does-not-exist"})
        expect(r.is_error and structured(r).get("resourceType") == "OperationOutcome",
               "fhir_read of an unknown id -> isError with an OperationOutcome", text_of(r))

        r = await c.call_tool("resolve", {"query": f"Ada {family} born 1970"})
        expect(not r.is_error and structured(r).get("match") == "unique"
               and structured(r).get("id") == pid, f"resolve 'Ada {family} born 1970' -> unique", structured(r))

        templates = (await c.list_resource_templates()).resource_templates
        expect(any(t.uri_template == "fhir://{type}/{id}" for t in templates),
               "resources/templates/list has fhir://{type}/{id}", templates)
        res = await c.read_resource(f"fhir://Patient/{pid}")
        body = json.loads(res.contents[0].text)
        expect(body.get("id") == pid, "resources/read fhir://Patient/{id}", body)
        prompts = (await c.list_prompts()).prompts
        expect({"patient_briefing", "medication_reconciliation", "pre_visit_summary"}
               <= {p.name for p in prompts}, "prompts/list has the three prompts", prompts)
        uris, pages = await list_all_resources(c)
        expect(uris[0] == "fhir://metadata" and f"fhir://Patient/{pid}" in uris
               and f"fhir://Observation/{args.patient}-laboratory" in uris
               and len(uris) == len(set(uris)),
               "resources/list pages over patients and their records, each once", (pages, uris))


async def session_checks(args):
    """Session mode: a request in the session with another subject's token is refused."""
    http = bearer_client(args.token)
    async with client_for(args, http=http) as c:
        check_negotiated(args, c)
        http.headers["Authorization"] = f"Bearer {args.patient_token}"
        refused = None
        try:
            await c.list_tools()
        except Exception as e:  # noqa: BLE001 - the SDK maps the 403 to an error
            refused = e
        http.headers["Authorization"] = f"Bearer {args.token}"
        expect(refused is not None,
               "a request in the session with another subject's token is refused", refused)
        names = {t.name for t in (await c.list_tools()).tools}
        expect("fhir_read" in names, "the session's own subject continues it", sorted(names))


async def patient_checks(args):
    """A patient-scoped token reaches its own patient only."""
    async with client_for(args, args.patient_token) as c:
        check_negotiated(args, c)
        r = await c.call_tool("fhir_read", {"type": "Patient", "id": args.patient})
        expect(not r.is_error and structured(r).get("id") == args.patient,
               f"patient token: fhir_read Patient/{args.patient}", text_of(r))
        r = await c.call_tool("fhir_read", {"type": "Patient", "id": args.other_patient})
        expect(r.is_error and structured(r).get("resourceType") == "OperationOutcome",
               f"patient token: fhir_read Patient/{args.other_patient} -> isError (hidden)", text_of(r))
        r = await c.call_tool("fhir_search", {"type": "Observation",
                                              "params": {"subject": f"Patient/{args.other_patient}"}})
        expect(not r.is_error and structured(r).get("entries") == [],
               f"patient token: fhir_search Observation subject={args.other_patient} -> no entries",
               structured(r))
        r = await c.call_tool("fhir_search", {"type": "Patient"})
        refs = [e["reference"] for e in structured(r).get("entries", [])]
        expect(not r.is_error and refs == [f"Patient/{args.patient}"],
               "patient token: fhir_search Patient -> only its own patient", refs)
        uris, _ = await list_all_resources(c)
        expect(f"fhir://Patient/{args.patient}" in uris
               and not any(args.other_patient in u for u in uris),
               "patient token: resources/list shows its own record only", uris)


async def stdio_checks(args):
    async with client_for(args) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        expect("fhir_read" in names and "patient_summary" in names, "stdio: tools/list", sorted(names))
        r = await c.call_tool("fhir_read", {"type": "Patient", "id": args.patient})
        expect(not r.is_error and structured(r).get("id") == args.patient,
               f"stdio: fhir_read Patient/{args.patient}", text_of(r))
        r = await c.call_tool("fhir_search", {"type": "Observation",
                                              "params": {"subject": f"Patient/{args.patient}"}})
        expect(not r.is_error and structured(r).get("count", 0) >= 1,
               "stdio: fhir_search Observation for the patient", structured(r))
        r = await c.call_tool("fhir_create", {"resource": {"resourceType": "Patient",
                                                           "name": [{"family": "Stdio"}]}})
        expect(not r.is_error and structured(r).get("id"), "stdio: fhir_create", text_of(r))


async def main_async(args):
    if args.stdio_command:
        await stdio_checks(args)
        if args.patient_token:
            await patient_checks(args)
    else:
        await admin_checks(args)
        if args.patient_token:
            await patient_checks(args)
            if args.mode == "legacy":
                await session_checks(args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--stdio-command")
    ap.add_argument("--token", required=True)
    ap.add_argument("--patient-token")
    ap.add_argument("--patient", default="p1")
    ap.add_argument("--other-patient", default="p2")
    ap.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    ap.add_argument("--expect-version")
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except CheckFailed as e:
        print(f"FAIL {PASSED + 1:2d} {e}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        print(f"FAIL {PASSED + 1:2d} unexpected {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"{PASSED} passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
