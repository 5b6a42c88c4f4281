#!/usr/bin/env python3
"""End-to-end test of Vesta's SMART App Launch authorization server, driven
by the real SMART Python client `fhirclient` (PyPI).

It runs against an already-running Vesta that already holds the two patients
(each with at least one Observation whose subject is that patient) and a user
whose fhirUser is Practitioner/dr-alice:

    python3 tests/python/smart_fhirclient.py \
        --fhir-base http://127.0.0.1:PORT/fhir --username USER --password PASS \
        --patient p1 --other-patient p2 \
        --client-id vesta-demo-app --redirect-uri http://localhost:4000/callback

What plays which part:
  * fhirclient does what a SMART app does: discovery (the CapabilityStatement's
    oauth-uris extension), the authorize URL (state, aud, PKCE), the code
    exchange at the callback, the refresh, and reads through its model API.
  * `requests` plays the user's browser (GET the authorize URL, sign in,
    consent, read the redirect), never following redirects by itself.
  * Raw `requests` calls check what the app cannot see through fhirclient:
    exact status codes, introspection, revocation, refresh-token reuse.

It talks to no host but the one in --fhir-base, prints one line per check, and
exits 0 only if every check passed; on the first failure it prints FAIL with
the reason and exits 1.
"""

import argparse
import base64
import hashlib
import json
import logging
import secrets
import sys
import time
import urllib.parse
from html.parser import HTMLParser

import requests

try:
    from fhirclient import client as fhir_client_module
    from fhirclient.auth import FHIRAuth, FHIROAuth2Auth
    from fhirclient.models.fhirabstractbase import FHIRValidationError
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient
    from fhirclient.server import FHIRNotFoundException
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"FAIL import fhirclient: {e} (run tests/python/bootstrap.sh first)")

HTTP_TIMEOUT = 30
# fhirclient logs "Received an id_token, ignoring" at WARNING on every code
# exchange; this test reads the id_token from the launch context itself.
logging.getLogger("fhirclient").setLevel(logging.ERROR)
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


# --------------------------------------------------------------------------
# PKCE for fhirclient < 4.4
#
# fhirclient 4.4.0 sends code_challenge/code_challenge_method=S256 on the
# authorize URL and code_verifier on the code exchange by itself. 4.3.x does
# not, and Vesta (rightly: SMART App Launch 2 requires PKCE S256) refuses a
# public client's authorization request without it. So with 4.3.x, and only
# then, register a minimal subclass of fhirclient's OAuth2 handler that adds
# those three parameters; everything else stays fhirclient's own code.
# --------------------------------------------------------------------------

def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


NATIVE_PKCE = hasattr(FHIROAuth2Auth(), "code_verifier")


class PkceOAuth2Auth(FHIROAuth2Auth):
    """fhirclient 4.3.x's FHIROAuth2Auth plus RFC 7636 PKCE (S256)."""

    auth_type = "oauth2"

    def __init__(self, state=None):
        self.code_verifier = None
        super().__init__(state=state)

    def _authorize_params(self, server):
        params = super()._authorize_params(server)
        if self.code_verifier is None:
            self.code_verifier = secrets.token_urlsafe(64)
        params["code_challenge"] = _s256(self.code_verifier)
        params["code_challenge_method"] = "S256"
        return params

    def _code_exchange_params(self, code):
        params = super()._code_exchange_params(code)
        params["code_verifier"] = self.code_verifier
        return params


if not NATIVE_PKCE:
    FHIRAuth.auth_classes["oauth2"] = PkceOAuth2Auth


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

class CheckFailed(Exception):
    pass


PASSED = 0


def ok(msg):
    global PASSED
    PASSED += 1
    print(f"ok   {PASSED:2d} {msg}", flush=True)


def note(msg):
    print(f"note    {msg}", flush=True)


def fail(msg):
    raise CheckFailed(msg)


def expect(cond, msg, detail=""):
    """Record a passed check, or fail with `msg` and `detail`."""
    if not cond:
        fail(f"{msg}: {detail}" if detail else msg)
    ok(msg)


def show(resp):
    """A short description of an HTTP response, for failure messages."""
    body = resp.text if resp is not None else ""
    if len(body) > 600:
        body = body[:600] + "..."
    loc = resp.headers.get("Location")
    return f"HTTP {resp.status_code}{' Location: ' + loc if loc else ''} body: {body!r}"


# --------------------------------------------------------------------------
# HTML forms (the login and consent pages), parsed with html.parser
# --------------------------------------------------------------------------

class Form:
    def __init__(self, action, method):
        self.action = action
        self.method = method
        self.inputs = []  # dicts of attributes, in document order
        self.selects = {}  # name -> list of option values
        self.buttons = []  # (name, value)


class FormParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self._form = None
        self._select = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower())
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input":
            self._form.inputs.append(a)
        elif tag == "select":
            self._select = a.get("name", "")
            self._form.selects[self._select] = []
        elif tag == "option" and self._select is not None:
            self._form.selects[self._select].append(a.get("value", ""))
        elif tag == "button":
            self._form.buttons.append((a.get("name", ""), a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def form_posting_to(html, path):
    p = FormParser()
    p.feed(html)
    for f in p.forms:
        if urllib.parse.urlsplit(f.action).path == path:
            return f
    fail(f"no form posting to {path} in page: {html[:400]!r}")


def hidden(form, name):
    for i in form.inputs:
        if i.get("type", "text").lower() == "hidden" and i.get("name") == name:
            return i.get("value", "")
    fail(f"form {form.action} has no hidden input {name!r}")


# --------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------

class Run:
    def __init__(self, args):
        self.a = args
        self.fhir_base = args.fhir_base.rstrip("/")
        parts = urllib.parse.urlsplit(self.fhir_base)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.http = requests.Session()  # the app's own raw calls
        self.smart_config = None
        self.issuer = None

    # ---- helpers ---------------------------------------------------------

    def same_origin(self, url, what):
        if not url or not url.startswith(self.origin + "/"):
            fail(f"{what} {url!r} is not on the server under test ({self.origin}); refusing to contact it")

    def get(self, path_or_url, token=None, **kw):
        url = path_or_url if "://" in path_or_url else f"{self.fhir_base}/{path_or_url}"
        self.same_origin(url, "URL")
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.get(url, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False, **kw)

    def post_form(self, url, data):
        self.same_origin(url, "URL")
        return self.http.post(url, data=data, timeout=HTTP_TIMEOUT, allow_redirects=False)

    def new_client(self):
        # The scope asks for launch/patient itself; fhirclient would prepend
        # another launch/patient (wants_patient) when no patient is known yet.
        # Leave that behaviour alone: a server must cope with a repeated scope.
        settings = {
            "app_id": self.a.client_id,
            "api_base": self.fhir_base,
            "redirect_uri": self.a.redirect_uri,
            "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
        }
        return fhir_client_module.FHIRClient(settings=settings)

    def browser_flow(self, authorize_url, *, pick_patient=None, type_patient=None,
                     decision="approve"):
        """Play the user's browser from the authorize URL to the redirect back
        to the app. Returns (consent form, redirect Location)."""
        browser = requests.Session()
        self.same_origin(authorize_url, "authorize URL")
        r = browser.get(authorize_url, timeout=HTTP_TIMEOUT, allow_redirects=False)
        if r.status_code != 200 or "html" not in r.headers.get("content-type", ""):
            fail(f"GET authorize URL did not give the login page: {show(r)}")
        login = form_posting_to(r.text, "/auth/login")
        pending = hidden(login, "pending")
        login_url = urllib.parse.urljoin(r.url, login.action)
        self.same_origin(login_url, "login form action")
        r = browser.post(login_url, data={
            "pending": pending, "username": self.a.username, "password": self.a.password,
        }, timeout=HTTP_TIMEOUT, allow_redirects=False)
        if r.status_code != 200:
            fail(f"POST /auth/login did not give the consent page: {show(r)}")
        consent = form_posting_to(r.text, "/auth/consent")
        hidden(consent, "pending")
        if pick_patient is not None and pick_patient not in consent.selects.get("patient", []):
            fail(f"consent page's patient picker has no option {pick_patient!r}: {consent.selects}")
        # Submit what a browser submits: every named field (the untouched
        # select sends its first option, an empty text field sends ""), the
        # checked boxes, and the clicked button.
        typed = {"patient": pick_patient, "patient_id": type_patient}
        data = []
        for i in consent.inputs:
            name, kind = i.get("name"), i.get("type", "text").lower()
            if not name or kind in ("submit", "button", "image", "reset"):
                continue
            if kind in ("checkbox", "radio"):
                if "checked" in i:
                    data.append((name, i.get("value", "on")))
            else:
                data.append((name, typed.get(name) if typed.get(name) is not None else i.get("value", "")))
        for name, options in consent.selects.items():
            data.append((name, typed.get(name) if typed.get(name) is not None else (options or [""])[0]))
        if ("decision", decision) not in consent.buttons:
            fail(f"consent page has no button decision={decision}: {consent.buttons}")
        data.append(("decision", decision))
        consent_url = urllib.parse.urljoin(r.url, consent.action)
        self.same_origin(consent_url, "consent form action")
        r = browser.post(consent_url, data=data, timeout=HTTP_TIMEOUT, allow_redirects=False)
        if r.status_code not in (302, 303) or not r.headers.get("Location"):
            fail(f"POST /auth/consent did not redirect back to the app: {show(r)}")
        return consent, r.headers["Location"]

    def token_post(self, data):
        return self.post_form(self.smart_config["token_endpoint"], data)

    def introspect(self, token, hint=None):
        data = {"token": token, "client_id": self.a.client_id}
        if hint:
            data["token_type_hint"] = hint
        r = self.post_form(self.smart_config["introspection_endpoint"], data)
        if r.status_code != 200:
            fail(f"POST introspect did not answer 200: {show(r)}")
        return r.json()

    def revoke(self, token, hint=None):
        data = {"token": token, "client_id": self.a.client_id}
        if hint:
            data["token_type_hint"] = hint
        return self.post_form(self.smart_config["revocation_endpoint"], data)

    def refresh_raw(self, refresh_token):
        return self.token_post({
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": self.a.client_id,
        })

    def expect_invalid_grant(self, r, msg):
        try:
            err = r.json().get("error")
        except ValueError:
            err = None
        expect(r.status_code == 400 and err == "invalid_grant", msg, show(r))

    # ---- the checks ------------------------------------------------------

    def discovery(self):
        r = self.get(".well-known/smart-configuration")
        if r.status_code != 200:
            fail(f"GET {self.fhir_base}/.well-known/smart-configuration: {show(r)}")
        cfg = r.json()
        self.smart_config = cfg
        for key in ("authorization_endpoint", "token_endpoint",
                    "introspection_endpoint", "revocation_endpoint"):
            self.same_origin(cfg.get(key), f"smart-configuration {key}")
        self.issuer = cfg.get("issuer")
        expect(bool(self.issuer) and "S256" in cfg.get("code_challenge_methods_supported", []),
               "smart-configuration names an issuer and code_challenge_methods_supported has S256",
               json.dumps(cfg)[:600])

    def main_flow(self):
        a = self.a
        client = self.new_client()

        # --- 1. discovery and the authorize URL (fhirclient) ---
        try:
            # fetches /metadata, parses it (strictly, as every fhirclient app
            # does) into an R4 CapabilityStatement, picks the oauth-uris
            authorize_url = client.authorize_url
        except FHIRValidationError as e:
            fail("fhirclient cannot parse GET /fhir/metadata as an R4 CapabilityStatement, so no "
                 f"fhirclient app can discover the SMART endpoints: {' '.join(str(e).split())}")
        ok("fhirclient parsed /metadata as an R4 CapabilityStatement")
        auth = client.server.auth
        expect(isinstance(auth, FHIROAuth2Auth),
               "fhirclient found OAuth2 (SMART oauth-uris extension) in /metadata",
               f"auth handler is {type(auth).__name__}")
        expect(auth._authorize_uri == self.smart_config["authorization_endpoint"]
               and auth._token_uri == self.smart_config["token_endpoint"],
               "metadata's oauth-uris authorize/token equal smart-configuration's endpoints",
               f"metadata: {auth._authorize_uri} {auth._token_uri}; "
               f"smart-configuration: {self.smart_config['authorization_endpoint']} "
               f"{self.smart_config['token_endpoint']}")
        u = urllib.parse.urlsplit(authorize_url)
        q = dict(urllib.parse.parse_qsl(u.query))
        expect(f"{u.scheme}://{u.netloc}{u.path}" == self.origin + "/auth/authorize",
               "client.authorize_url points at the server's /auth/authorize", authorize_url)
        expect(q.get("aud") == self.fhir_base and q.get("response_type") == "code"
               and q.get("client_id") == a.client_id and q.get("redirect_uri") == a.redirect_uri
               and q.get("state"),
               "authorize_url carries aud = FHIR base, response_type=code, client_id, redirect_uri, state",
               authorize_url)
        expect(q.get("code_challenge_method") == "S256"
               and q.get("code_challenge") == _s256(auth.code_verifier),
               "authorize_url carries a PKCE S256 code_challenge of fhirclient's verifier"
               + ("" if NATIVE_PKCE else " (4.3.x + test's PKCE subclass)"), authorize_url)

        # --- 2. the browser: login, consent with patient p1, redirect ---
        consent, location = self.browser_flow(authorize_url, pick_patient=a.patient)
        offered = [i.get("value") for i in consent.inputs
                   if i.get("type", "").lower() == "checkbox" and i.get("name") == "scope"]
        wanted = q["scope"].split()
        expect(set(offered) == set(wanted) and len(offered) == len(set(offered)),
               "consent page offers each requested scope once", f"offered {offered}, requested {wanted}")
        expect(a.patient in consent.selects.get("patient", [])
               and any(i.get("name") == "patient_id" for i in consent.inputs),
               "consent page offers a patient picker (select with p1, and a patient_id field)",
               f"selects {consent.selects}")
        cb = urllib.parse.urlsplit(location)
        cbq = dict(urllib.parse.parse_qsl(cb.query))
        expect(location.startswith(a.redirect_uri + "?") and cbq.get("code")
               and cbq.get("state") == q["state"] and cbq.get("iss") == self.issuer,
               "consent redirects to redirect_uri with code, the same state, and iss = issuer",
               f"Location: {location}; issuer {self.issuer}")

        # --- 3. fhirclient exchanges the code ---
        try:
            client.handle_callback(location)
        except requests.HTTPError as e:
            fail(f"client.handle_callback (code exchange) failed: {show(e.response)}")
        ctx = client.launch_context or {}
        expect(client.ready and client.patient_id == a.patient,
               f"client.handle_callback exchanged the code: client.ready, client.patient_id == {a.patient!r}",
               f"ready={client.ready} patient_id={client.patient_id!r} context={ctx}")
        granted = (ctx.get("scope") or "").split()
        expect(str(ctx.get("token_type", "")).lower() == "bearer"
               and {"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"} <= set(granted)
               and auth.refresh_token and ctx.get("id_token")
               and isinstance(ctx.get("need_patient_banner"), bool),
               "token response: Bearer, granted scope, refresh_token, id_token, need_patient_banner",
               f"context={ctx} refresh_token={bool(auth.refresh_token)}")
        access1 = auth.access_token
        refresh1 = auth.refresh_token
        id_token = ctx["id_token"]

        pt = Patient.read(a.patient, client.server)
        family = pt.name[0].family if pt.name else None
        expect(pt.id == a.patient and family == "Chalmers",
               f"fhirclient Patient.read({a.patient!r}) -> name Chalmers", f"id={pt.id} family={family}")
        expect(client.patient is not None and client.patient.id == a.patient,
               "client.patient (fhirclient's launch-context patient) is p1", f"{client.patient}")

        # --- 4. the token is confined to patient p1 ---
        r = self.get(f"Patient/{a.other_patient}", access1)
        expect(r.status_code == 404, f"GET Patient/{a.other_patient} with p1's token -> 404", show(r))
        try:
            Patient.read(a.other_patient, client.server)
            fail(f"fhirclient Patient.read({a.other_patient!r}) succeeded with p1's token")
        except FHIRNotFoundException:
            ok(f"fhirclient Patient.read({a.other_patient!r}) raises FHIRNotFoundException")
        r = self.get(f"Observation?subject=Patient/{a.other_patient}", access1)
        entries = r.json().get("entry", []) if r.status_code == 200 else None
        expect(r.status_code == 200 and r.json().get("resourceType") == "Bundle" and entries == [],
               f"GET Observation?subject=Patient/{a.other_patient} -> bundle with no entries", show(r))
        r = self.get("Observation", access1)
        subjects = sorted({(e.get("resource", {}).get("subject") or {}).get("reference")
                           for e in r.json().get("entry", [])}) if r.status_code == 200 else None
        expect(r.status_code == 200 and subjects == [f"Patient/{a.patient}"],
               f"GET Observation (no parameters) -> only Patient/{a.patient}'s observations",
               f"subjects {subjects}; {show(r) if r.status_code != 200 else ''}")
        obs = list(Observation.where(struct={"subject": f"Patient/{a.patient}"})
                   .perform_resources_iter(client.server))
        expect(len(obs) >= 1 and all(o.subject.reference == f"Patient/{a.patient}" for o in obs),
               f"fhirclient Observation.where(subject=Patient/{a.patient}) finds p1's observations",
               f"{[(o.id, o.subject.reference) for o in obs]}")
        r = self.get(f"Patient/{a.patient}")
        expect(r.status_code == 401, "GET Patient/p1 without a token -> 401", show(r))

        # --- 7. id_token ---
        try:
            header_b64, payload_b64, _sig = id_token.split(".")
            header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
            claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        except Exception as e:  # noqa: BLE001
            fail(f"id_token is not a decodable JWS compact JWT: {e}: {id_token[:80]!r}")
        aud = claims.get("aud")
        fhir_user = claims.get("fhirUser")
        # SMART allows fhirUser relative to the FHIR base (aud) or absolute.
        expect(fhir_user in ("Practitioner/dr-alice", f"{self.fhir_base}/Practitioner/dr-alice"),
               "id_token fhirUser is Practitioner/dr-alice", json.dumps(claims))
        expect((aud == a.client_id or (isinstance(aud, list) and a.client_id in aud))
               and claims.get("iss") == self.issuer and claims.get("sub")
               and isinstance(claims.get("exp"), int) and claims["exp"] > time.time()
               and header.get("alg") not in (None, "none"),
               "id_token: aud = client_id, iss = issuer, sub, exp in the future, signed (alg not none)",
               f"header {header} claims {claims}")

        # --- 6a. introspection of the access token ---
        info = self.introspect(access1)
        expect(info.get("active") is True and "patient/*.rs" in (info.get("scope") or "").split(),
               "introspect(access token) -> active true with scope patient/*.rs", json.dumps(info))
        info = self.introspect(refresh1, "refresh_token")
        expect(info.get("active") is True, "introspect(refresh token) -> active true", json.dumps(info))

        # --- 5. refresh with fhirclient, then reuse of the old refresh token ---
        try:
            reauthorized = client.reauthorize()
        except requests.HTTPError as e:
            fail(f"client.reauthorize() (refresh_token grant) failed: {show(e.response)}")
        refresh2 = auth.refresh_token
        access2 = auth.access_token
        expect(reauthorized and access2 and access2 != access1,
               "client.reauthorize() got a new access token", f"launch_context={client.launch_context}")
        expect(refresh2 and refresh2 != refresh1,
               "refresh rotated the refresh token", f"old == new: {refresh2 == refresh1}")
        pt = Patient.read(a.patient, client.server)
        expect(pt.id == a.patient and client.patient_id == a.patient,
               "fhirclient reads Patient/p1 with the refreshed token; patient context kept",
               f"patient_id={client.patient_id} context={client.launch_context}")
        info = self.introspect(access2)
        expect(info.get("active") is True and "patient/*.rs" in (info.get("scope") or "").split(),
               "introspect(refreshed access token) -> active true with scope", json.dumps(info))
        r = self.refresh_raw(refresh1)
        self.expect_invalid_grant(r, "reusing the old refresh token -> 400 invalid_grant")
        info = self.introspect(refresh2, "refresh_token")
        expect(info.get("active") is False,
               "after the reuse, the rotated refresh token is revoked too (introspect -> inactive)",
               json.dumps(info))
        r = self.refresh_raw(refresh2)
        self.expect_invalid_grant(r, "the rotated refresh token is refused (400 invalid_grant)")
        still = self.introspect(access2).get("active")
        note(f"after refresh-token reuse the latest access token is active={still} "
             "(revoking it too is allowed, not required)")

    def revoke_flow(self):
        """A second authorization (patient typed into patient_id), whose refresh
        token is then revoked."""
        a = self.a
        client = self.new_client()
        _consent, location = self.browser_flow(client.authorize_url, type_patient=a.patient)
        try:
            client.handle_callback(location)
        except requests.HTTPError as e:
            fail(f"second client.handle_callback failed: {show(e.response)}")
        expect(client.patient_id == a.patient,
               "second launch, patient typed into patient_id -> patient p1", f"{client.launch_context}")
        auth = client.server.auth
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]

        r = self.revoke(auth.refresh_token, "refresh_token")
        expect(r.status_code == 200, "POST revoke(refresh token) -> 200", show(r))
        info = self.introspect(auth.refresh_token, "refresh_token")
        expect(info.get("active") is False, "introspect(revoked refresh token) -> active false",
               json.dumps(info))
        r = self.refresh_raw(auth.refresh_token)
        self.expect_invalid_grant(r, "the revoked refresh token is refused (400 invalid_grant)")
        note("after revoking the refresh token its access token is active="
             f"{self.introspect(auth.access_token).get('active')} (RFC 7009: SHOULD be revoked too)")
        r = self.revoke(auth.access_token, "access_token")
        info = self.introspect(auth.access_token)
        expect(r.status_code == 200 and info.get("active") is False,
               "revoke(access token) -> 200, then introspect -> active false", f"{show(r)}; {info}")
        r = self.get(f"Patient/{a.patient}", auth.access_token)
        expect(r.status_code == 401, "the revoked access token is refused by the FHIR API (401)", show(r))

        # The authorization code of this launch was used once already.
        r = self.token_post({
            "grant_type": "authorization_code", "code": code, "redirect_uri": a.redirect_uri,
            "code_verifier": auth.code_verifier, "client_id": a.client_id,
        })
        self.expect_invalid_grant(r, "replaying a used authorization code -> 400 invalid_grant")

    def pkce_flow(self):
        """A third authorization whose code is presented with a wrong verifier."""
        a = self.a
        client = self.new_client()
        _consent, location = self.browser_flow(client.authorize_url, pick_patient=a.patient)
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]
        r = self.token_post({
            "grant_type": "authorization_code", "code": code, "redirect_uri": a.redirect_uri,
            "code_verifier": secrets.token_urlsafe(64), "client_id": a.client_id,
        })
        self.expect_invalid_grant(r, "code exchange with a wrong PKCE code_verifier -> 400 invalid_grant")

    def deny_flow(self):
        a = self.a
        client = self.new_client()
        state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(client.authorize_url).query))["state"]
        _consent, location = self.browser_flow(client.authorize_url, pick_patient=a.patient,
                                               decision="deny")
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        expect(location.startswith(a.redirect_uri + "?") and q.get("error") == "access_denied"
               and q.get("state") == state and "code" not in q,
               "consent denied -> redirect with error=access_denied and the state, no code", location)
        try:
            client.handle_callback(location)
            fail("fhirclient accepted a denied authorization")
        except CheckFailed:
            raise
        except Exception as e:  # fhirclient raises a plain Exception here
            expect("denied" in str(e), "fhirclient handle_callback reports the denial", str(e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fhir-base", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--patient", required=True)
    ap.add_argument("--other-patient", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--redirect-uri", required=True)
    args = ap.parse_args()

    print(f"fhirclient {fhir_client_module.__version__}"
          f" ({'native PKCE' if NATIVE_PKCE else 'PKCE added by this test'}), requests {requests.__version__},"
          f" server {args.fhir_base}", flush=True)
    run = Run(args)
    try:
        run.discovery()
        run.main_flow()
        run.revoke_flow()
        run.pkce_flow()
        run.deny_flow()
    except CheckFailed as e:
        print(f"FAIL {PASSED + 1:2d} {e}", flush=True)
        print(f"{PASSED} passed, 1 failed", flush=True)
        return 1
    except requests.RequestException as e:
        print(f"FAIL {PASSED + 1:2d} HTTP error talking to {args.fhir_base}: {e!r}", flush=True)
        print(f"{PASSED} passed, 1 failed", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - any other error fails the run too
        import traceback
        traceback.print_exc()
        print(f"FAIL {PASSED + 1:2d} unexpected {type(e).__name__}: {e}", flush=True)
        print(f"{PASSED} passed, 1 failed", flush=True)
        return 1
    print(f"{PASSED} passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
