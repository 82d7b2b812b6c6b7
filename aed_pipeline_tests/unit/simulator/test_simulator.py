"""Tests of the offline API simulator itself (not of any client)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import pathlib
import re
import time
import xml.etree.ElementTree as ET

import httpx
import pytest

from aed_pipeline.simulator import Simulator, SimulatorServer, aed_data, simulator_transport
from aed_pipeline_tests.support.helpers import RECORDED, RECORDED_AED_XML

TODAY = dt.date(2026, 11, 23)  # a Monday
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"}
EGEN = "http://sim/B552657/AEDInfoInqireService"
FULL = EGEN + "/getAedFullDown"
AT = "http://sim/api/returnData.api"
SIM_DIR = pathlib.Path(aed_data.__file__).parent


def get(sim: Simulator, url: str, params: dict | None = None, headers: dict | None = None):
    """Call the simulator core directly with an httpx-encoded URL."""
    req = httpx.Request("GET", url, params=params, headers=UA if headers is None else headers)
    return sim.handle("GET", str(req.url), dict(req.headers))


def items_of(body: bytes) -> list[ET.Element]:
    return ET.fromstring(body).findall("./body/items/item")


def text_items(body: bytes) -> list[dict[str, str]]:
    return [{c.tag: c.text for c in it} for it in items_of(body)]


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(today=TODAY, aed_count=2000)


@pytest.fixture(scope="module")
def server():
    s = Simulator(today=TODAY, aed_count=2000, egen_service_keys={"egen-key+/="}, at_service_keys={"AT-KEY", "sample"})
    with SimulatorServer(s) as srv:
        yield srv


@pytest.fixture()
def live(server):
    server.sim.reset_faults()
    server.sim.reset_counters()
    server.sim.today = TODAY
    with httpx.Client(headers=UA, timeout=10) as client:
        yield server, client
    server.sim.reset_faults()


# --------------------------------------------------------------------------- isolation
def test_simulator_shares_no_code_with_the_project():
    for f in SIM_DIR.glob("*.py"):
        src = f.read_text()
        assert not re.search(r"^\s*(from|import)\s+aed_pipeline\.(?!simulator)", src, re.M), f
        assert not re.search(r"^\s*from\s+\.\.", src, re.M), f


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_date_identical_bytes():
    a = Simulator(today=TODAY, aed_count=2000)
    b = Simulator(today=TODAY, aed_count=2000)
    for params in ({"numOfRows": 700, "pageNo": 2}, {"numOfRows": 50, "_type": "json"}):
        p = {"serviceKey": "k", **params}
        assert get(a, FULL, p).body == get(b, FULL, p).body
    fp = {
        "kind": "f001",
        "serviceKey": "k",
        "baseDate": "2026-11-16",
        "flowerGubn": 1,
        "dataType": "json",
        "countPerPage": 5000,
    }
    assert get(a, AT, fp).body == get(b, AT, fp).body
    c = Simulator(seed=7, today=TODAY, aed_count=2000)
    assert (
        get(c, FULL, {"serviceKey": "k", "numOfRows": 50}).body
        != get(a, FULL, {"serviceKey": "k", "numOfRows": 50}).body
    )


def _snapshot(sim: Simulator) -> dict[str, dict[str, str]]:
    body = get(sim, FULL, {"serviceKey": "k", "numOfRows": 100000}).body
    out = {}
    for it in text_items(body):
        it.pop("rnum")
        out[it["serialSeq"]] = it
    return out


def test_next_day_differs_plausibly():
    sim = Simulator(today=dt.date(2026, 6, 10), aed_count=20000)
    d0 = _snapshot(sim)
    sim.today = dt.date(2026, 6, 11)
    d1 = _snapshot(sim)
    assert len(d0) == len(set(d0))
    common = d0.keys() & d1.keys()
    changed = [k for k in common if d0[k] != d1[k]]
    added, removed = d1.keys() - d0.keys(), d0.keys() - d1.keys()
    # ~0.1-0.3 % edited per day, a handful added/removed, count within 1 %
    assert 0.0005 * len(d0) <= len(changed) <= 0.005 * len(d0)
    assert len(added) + len(removed) <= 30
    assert abs(len(d1) - len(d0)) <= 0.01 * len(d0)
    for k in changed:  # edits touch one or two field groups, never the identity
        diff = {f for f in d0[k].keys() | d1[k].keys() if d0[k].get(f) != d1[k].get(f)}
        assert diff and diff <= {
            "buildPlace",
            "clerkTel",
            "manager",
            "managerTel",
            "mfg",
            "model",
            "wgs84Lat",
            "wgs84Lon",
        } | {f for f in aed_data.ITEM_FIELDS if f.endswith("Tme") or f.endswith("Yon")}
    # over a month devices do appear and disappear
    sim.today = dt.date(2026, 7, 10)
    d30 = _snapshot(sim)
    assert d30.keys() - d0.keys() and d0.keys() - d30.keys()
    assert abs(len(d30) - len(d0)) <= 0.01 * len(d0)


def test_full_default_dataset_count_and_distribution():
    sim = Simulator(today=aed_data.EPOCH)
    t0 = time.perf_counter()
    reg = sim.registry
    ids = reg.active_ids(sim.today)
    recs = reg.records(ids, sim.today.toordinal())
    elapsed = time.perf_counter() - t0
    print(f"generated {len(recs)} records in {elapsed:.2f} s")
    assert len(recs) == 81464
    assert len({r["serialSeq"] for r in recs}) == 81464
    counts = collections.Counter(r.get("sido") for r in recs)
    canon = {"강원도": "강원특별자치도", "전라북도": "전북특별자치도"}
    merged = collections.Counter()
    for k, v in counts.items():
        merged[canon.get(k, k)] += v
    shares = {s.name: s.share for s in aed_data.SIDOS}
    for name, share in shares.items():
        assert abs(merged[name] / len(recs) - share) < 0.006, name
    assert 0.18 < merged["경기도"] / len(recs) < 0.195
    assert 0.165 < merged["서울특별시"] / len(recs) < 0.18
    assert 0.007 < merged["세종특별자치시"] / len(recs) < 0.013
    # every 시군구 is a real one of its 시도; dirt exists but is rare
    gugun_of = {s.name: set(s.guguns) for s in aed_data.SIDOS}
    for r in recs[:20000]:
        if "sido" in r:
            assert r["gugun"] in gugun_of[canon.get(r["sido"], r["sido"])]
    no_coord = sum(1 for r in recs if "wgs84Lat" not in r)
    outside = sum(
        1
        for r in recs
        if "wgs84Lat" in r and not (32 < float(r["wgs84Lat"]) < 39.5 and 124 < float(r["wgs84Lon"]) < 132)
    )
    old_names = counts["강원도"] + counts["전라북도"]
    no_mfg = sum(1 for r in recs if "mfg" not in r)
    for n in (no_coord, outside, old_names, no_mfg):
        assert 0 < n < 0.01 * len(recs)
    assert len(aed_data.SIDOS) == 17
    assert (
        sum(len(s.guguns) for s in aed_data.SIDOS)
        == 25 + 16 + 9 + 10 + 5 + 5 + 5 + 1 + 31 + 18 + 11 + 15 + 14 + 22 + 22 + 18 + 2
    )


def test_large_registry_is_compact():
    reg = aed_data.AedRegistry(1, 814640)
    assert len(reg.active_ids(aed_data.EPOCH)) == 814640
    nbytes = sum(a.nbytes for a in (reg.sido, reg.gugun, reg.created, reg.removed, reg.period, reg.phase, reg.dseed))
    assert nbytes < 40 * 2**20
    page = reg.records(reg.active_ids(TODAY)[700000:700050], TODAY.toordinal())
    assert len(page) == 50


# --------------------------------------------------------------------------- XML / JSON shapes
def test_xml_success_shape(sim):
    r = get(sim, FULL, {"serviceKey": "k", "pageNo": 2, "numOfRows": 100})
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/xml"
    assert r.headers["Server"] == "Apache/2.2.22 (Red Hat Enterprise Web Server) DAV/2 mod_jk/1.2.37"
    body = r.body.decode()
    assert body.startswith(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><header>'
        "<resultCode>00</resultCode><resultMsg>NORMAL SERVICE.</resultMsg></header><body><items>"
    )
    assert "\n" not in body and "/>" not in body
    assert re.search(
        r"</items><numOfRows>100</numOfRows><pageNo>2</pageNo><totalCount>\d+</totalCount></body>"
        r"</response>$",
        body,
    )
    its = items_of(r.body)
    assert len(its) == 100
    for n, it in enumerate(its, 101):
        tags = [c.tag for c in it]
        assert tags == sorted(tags)
        assert all(c.text for c in it), "no empty elements"
        d = {c.tag: c.text for c in it}
        assert d["rnum"] == str(n)
        assert re.fullmatch(r"\d{3}-\d{6}-\d{6}", d["serialSeq"])
        assert d["serialSeq"][:3] == d["zipcode1"] and len(d["zipcode2"]) == 2
        assert re.fullmatch(r".\*\*", d["manager"]) and "*" in d["managerTel"]
        for k, v in d.items():
            if k.endswith("Tme"):
                assert re.fullmatch(r"\d{4}", v) and "0000" <= v <= "2400"
            if k.endswith("Yon"):
                assert v in ("Y", "N")
    # same sample of the recorded response: the recorded items are sorted the same way
    rec = (RECORDED_AED_XML).read_bytes()
    rec_tags = set(c.tag for it in items_of(rec) for c in it)
    assert rec_tags <= set(aed_data.ITEM_FIELDS)


def test_xml_escaping(sim, monkeypatch):
    orig = aed_data._record

    def dirty(*a):
        rec = orig(*a)
        rec["org"] = "A&B <주>"
        return rec

    monkeypatch.setattr(aed_data, "_record", dirty)
    body = get(sim, FULL, {"serviceKey": "k", "numOfRows": 3}).body
    assert b"<org>A&amp;B &lt;\xec\xa3\xbc&gt;</org>" in body
    assert items_of(body)[0].find("org").text == "A&B <주>"


def test_page_past_the_end(sim):
    body = get(sim, FULL, {"serviceKey": "k", "pageNo": 999, "numOfRows": 100}).body.decode()
    assert "<items></items><numOfRows>100</numOfRows><pageNo>999</pageNo><totalCount>" in body
    js = json.loads(get(sim, FULL, {"serviceKey": "k", "pageNo": 999, "numOfRows": 100, "_type": "json"}).body)
    assert js["response"]["body"]["items"] == ""
    assert js["response"]["body"]["totalCount"] > 0


def test_json_shapes_and_autotyping(sim):
    p = {"serviceKey": "k", "_type": "json"}
    one = get(sim, FULL, {**p, "numOfRows": 1})
    assert one.headers["Content-Type"] == "application/json;charset=UTF-8"
    j1 = json.loads(one.body)
    assert j1["response"]["header"] == {"resultCode": "00", "resultMsg": "NORMAL SERVICE."}
    assert isinstance(j1["response"]["body"]["items"]["item"], dict)
    assert j1["response"]["body"]["numOfRows"] == 1 and j1["response"]["body"]["pageNo"] == 1
    many = json.loads(get(sim, FULL, {**p, "numOfRows": 300}).body)
    assert isinstance(many["response"]["body"]["items"]["item"], list)
    # compare with the XML of the same page, keeping JSON numbers as raw text
    raw = json.loads(
        get(sim, FULL, {**p, "numOfRows": 300}).body, parse_int=lambda s: ("num", s), parse_float=lambda s: ("num", s)
    )
    xml_items = text_items(get(sim, FULL, {"serviceKey": "k", "numOfRows": 300}).body)
    seen_types = collections.defaultdict(set)
    for jit, xit in zip(raw["response"]["body"]["items"]["item"], xml_items):
        assert list(jit) == list(xit)
        for k, v in jit.items():
            if isinstance(v, tuple):
                assert v[1] == xit[k]
                assert not re.match(r"-?0\d", v[1])
                seen_types[k].add("num")
            else:
                assert v == xit[k]
                assert not re.fullmatch(r"-?[1-9]\d*(\.\d+)?|0|0\.\d+", v), (k, v)
                seen_types[k].add("str")
    assert seen_types["rnum"] == {"num"}
    assert seen_types["friEndTme"] == {"num"} and "str" in seen_types["friSttTme"]
    assert seen_types["wgs84Lat"] == {"num"}
    assert seen_types["serialSeq"] == {"str"} and seen_types["sunFrtYon"] == {"str"}
    assert seen_types["zipcode1"] >= {"str"}  # many zip prefixes start with 0


def test_paging_covers_every_device_once(sim):
    seen, rnums, total = [], [], None
    page = 1
    while True:
        body = get(sim, FULL, {"serviceKey": "k", "pageNo": page, "numOfRows": 333}).body
        root = ET.fromstring(body)
        total = int(root.findtext("./body/totalCount"))
        its = text_items(body)
        if not its:
            break
        seen += [i["serialSeq"] for i in its]
        rnums += [int(i["rnum"]) for i in its]
        page += 1
    assert len(seen) == total == len(set(seen))
    assert rnums == list(range(1, total + 1))
    assert page - 1 == -(-total // 333)


def test_list_operation_filters_and_omits_sido(sim):
    op = EGEN + "/getEgytAedManageInfoInqire"
    body = get(sim, op, {"serviceKey": "k", "Q0": "서울특별시", "Q1": "종로구", "numOfRows": 500}).body
    its = text_items(body)
    total = int(ET.fromstring(body).findtext("./body/totalCount"))
    assert its and total == len(its)
    for it in its:
        assert "sido" not in it and "gugun" not in it
        assert it["buildAddress"].startswith("서울특별시 종로구 ")
    sejong = get(sim, op, {"serviceKey": "k", "Q0": "세종특별자치시", "numOfRows": 10}).body
    assert ET.fromstring(sejong).findtext("./body/totalCount") == "0"
    full = text_items(get(sim, FULL, {"serviceKey": "k", "numOfRows": 5000}).body)
    sj = [i for i in full if i.get("sido") == "세종특별자치시"]
    assert sj and all(i["buildAddress"].startswith("세종특별자치시 ") for i in sj)
    assert all(
        not i["buildAddress"].startswith(i["sido"]) for i in full if "sido" in i and i["sido"] != "세종특별자치시"
    )


# --------------------------------------------------------------------------- gateway & e-gen faults (real server)
def test_gateway_default_user_agent_blocked(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    expected = (
        RECORDED / "data_go_kr_gateway" / "apis-data-go-kr_400-request-blocked_default-UA_2026-05-16.html"
    ).read_bytes()
    for ua in ("python-httpx/0.28.1", "curl/8.5.0", "python-requests/2.32", "Wget/1.21", ""):
        r = client.get(url, params={"serviceKey": "egen-key+/="}, headers={"User-Agent": ua})
        assert r.status_code == 400 and r.content == expected
        assert r.headers["content-type"] == "text/html"
    r = httpx.get(url, params={"serviceKey": "egen-key+/="})  # httpx default UA
    assert r.status_code == 400


def test_gateway_capital_servicekey_502(live):
    srv, client = live
    r = client.get(srv.egen_base_url + "/getAedFullDown", params={"ServiceKey": "egen-key+/="})
    expected = (
        RECORDED / "data_go_kr_gateway" / "apis-data-go-kr_502-error-forwarding_ServiceKey-param_2026-05-16.txt"
    ).read_bytes()
    assert r.status_code == 502 and r.content == expected
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_key_checks_and_envelopes(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    ok = client.get(url, params={"serviceKey": "egen-key+/=", "numOfRows": 3})  # encoded once by httpx
    assert ok.status_code == 200 and len(items_of(ok.content)) == 3
    env = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR'
        "</errMsg><returnAuthMsg>SERVICE_KEY_IS_NOT_REGISTERED_ERROR</returnAuthMsg><returnReasonCode>30"
        "</returnReasonCode></cmmMsgHeader></OpenAPI_ServiceResponse>"
    )
    # double-encoded key, wrong key, missing key: all code 30 as XML with HTTP 200 (even for _type=json)
    for q in ("serviceKey=egen-key%252B%252F%253D", "serviceKey=nope&_type=json", "numOfRows=3", "serviceKey="):
        r = client.get(f"{url}?{q}")
        assert r.status_code == 200 and r.text == env, q
        assert r.headers["content-type"].startswith("text/xml")
    srv.sim.faults.envelope_without_declaration = True
    r = client.get(url, params={"serviceKey": "nope"})
    assert r.text == env.split("\n", 1)[1]
    srv.sim.faults.envelope_json = True
    r = client.get(url, params={"serviceKey": "nope"})
    assert r.json() == {
        "OpenAPI_ServiceResponse": {
            "cmmMsgHeader": {
                "errMsg": "SERVICE ERROR",
                "returnAuthMsg": "SERVICE_KEY_IS_NOT_REGISTERED_ERROR",
                "returnReasonCode": "30",
            }
        }
    }
    srv.sim.reset_faults()
    srv.sim.faults.bad_key = True
    r = client.get(url, params={"serviceKey": "egen-key+/="})
    assert "<returnReasonCode>30</returnReasonCode>" in r.text


def test_egen_quotas(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    p = {"serviceKey": "egen-key+/=", "numOfRows": 2}
    srv.sim.faults.egen_daily_quota = 2
    assert [("<resultCode>00" in client.get(url, params=p).text) for _ in range(2)] == [True, True]
    r = client.get(url, params=p)
    assert "<returnAuthMsg>LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR</returnAuthMsg>" in r.text
    assert "<returnReasonCode>22</returnReasonCode>" in r.text and r.status_code == 200
    srv.sim.today = TODAY + dt.timedelta(days=1)  # the quota is per day
    assert "<resultCode>00" in client.get(url, params=p).text
    srv.sim.reset_faults()
    srv.sim.faults.egen_per_second_count = 2
    texts = [client.get(url, params=p).text for _ in range(3)]
    assert ["<returnReasonCode>23</returnReasonCode>" in t for t in texts] == [True, True, False]
    assert "LIMITED_NUMBER_OF_SERVICE_REQUESTS_PER_SECOND_EXCEEDS_ERROR" in texts[0]


def test_egen_provider_error(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    srv.sim.faults.egen_provider_error_count = 1
    srv.sim.faults.egen_provider_error_msg = "APPLICATION ERROR & more"
    r = client.get(url, params={"serviceKey": "egen-key+/="})
    assert r.text == (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><header><resultCode>99'
        "</resultCode><resultMsg>APPLICATION ERROR &amp; more</resultMsg></header></response>"
    )
    assert "<resultCode>00" in client.get(url, params={"serviceKey": "egen-key+/="}).text


def test_transport_faults_through_real_server(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    p = {"serviceKey": "egen-key+/=", "numOfRows": 50}
    normal = client.get(url, params=p).content
    f = srv.sim.faults
    # latency
    f.latency = 0.3
    t0 = time.perf_counter()
    assert client.get(url, params=p).status_code == 200
    assert time.perf_counter() - t0 >= 0.3
    f.latency = 0
    # burst of 429 then 5xx, counted in the request log
    n0 = len(srv.sim.request_log)
    f.http_error_status, f.http_error_count, f.http_error_body = 429, 2, b"Too Many Requests"
    assert [client.get(url, params=p).status_code for _ in range(3)] == [429, 429, 200]
    assert len(srv.sim.request_log) - n0 == 3
    f.http_error_status, f.http_error_count, f.http_error_body = 503, 1, b""
    r = client.get(url, params=p)
    assert r.status_code == 503 and r.content == b""
    # timeout: server sleeps longer than the client waits
    f.timeout_count, f.timeout_seconds = 1, 3
    with pytest.raises(httpx.ReadTimeout):
        client.get(url, params=p, timeout=0.3)
    assert client.get(url, params=p).content == normal
    # connection reset
    f.reset_count = 1
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        client.get(url, params=p)
    assert client.get(url, params=p).content == normal
    # truncated and malformed pages
    f.truncate_count = 1
    r = client.get(url, params=p)
    assert r.status_code == 200 and r.content == normal[: len(normal) // 2]
    with pytest.raises(ET.ParseError):
        ET.fromstring(r.content)
    f.malformed_count = 1
    r = client.get(url, params=p)
    with pytest.raises(ET.ParseError):
        ET.fromstring(r.content)
    f.malformed_count = 1
    r = client.get(url, params={**p, "_type": "json"})
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert client.get(url, params=p).content == normal


def test_fault_scope_pages_and_api(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    f = srv.sim.faults
    f.pages, f.http_error_status, f.http_error_count = {2}, 500, -1
    assert [
        client.get(url, params={"serviceKey": "egen-key+/=", "pageNo": n, "numOfRows": 10}).status_code
        for n in (1, 2, 3, 2)
    ] == [200, 500, 200, 500]
    srv.sim.reset_faults()
    f = srv.sim.faults
    f.api, f.http_error_count = "at", -1
    assert client.get(url, params={"serviceKey": "egen-key+/="}).status_code == 200
    r = client.get(
        srv.at_base_url,
        params={"kind": "f001", "serviceKey": "AT-KEY", "baseDate": "2026-11-16", "flowerGubn": 1, "dataType": "json"},
    )
    assert r.status_code == 503


def test_corrupted_snapshots(live):
    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    p = {"serviceKey": "egen-key+/=", "numOfRows": 5000}
    full = client.get(url, params=p).content
    total = int(ET.fromstring(full).findtext("./body/totalCount"))
    srv.sim.faults.snapshot = "null_coordinates"
    its = text_items(client.get(url, params=p).content)
    assert len(its) == total and not any("wgs84Lat" in i or "wgs84Lon" in i for i in its)
    srv.sim.faults.snapshot = "half_missing"
    body = client.get(url, params={**p, "numOfRows": 400, "pageNo": 2}).content
    half = int(ET.fromstring(body).findtext("./body/totalCount"))
    assert 0.4 * total < half < 0.6 * total
    seen = []
    for page in range(1, -(-half // 400) + 1):
        seen += [
            i["serialSeq"] for i in text_items(client.get(url, params={**p, "numOfRows": 400, "pageNo": page}).content)
        ]
    assert len(seen) == len(set(seen)) == half


def test_in_process_transport_faults():
    sim = Simulator(today=TODAY, aed_count=500)
    client = httpx.Client(transport=simulator_transport(sim), headers=UA)
    url = FULL
    assert client.get(url, params={"serviceKey": "k"}).status_code == 200
    assert httpx.Client(transport=simulator_transport(sim)).get(url, params={"serviceKey": "k"}).status_code == 400
    sim.faults.timeout_count = 1
    with pytest.raises(httpx.ReadTimeout):
        client.get(url, params={"serviceKey": "k"})
    sim.faults.reset_count = 1
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url, params={"serviceKey": "k"})
    assert client.get(url, params={"serviceKey": "k"}).status_code == 200
    assert [e.api for e in sim.request_log] == ["egen"] * 5
    assert all("serviceKey" not in e.params for e in sim.request_log)


# --------------------------------------------------------------------------- aT flowers
def at_get(sim, **params):
    p = {"kind": "f001", "serviceKey": "k", "flowerGubn": 1, "dataType": "json", "countPerPage": 99999, **params}
    return get(sim, AT, {k: v for k, v in p.items() if v is not None})


def at_items(sim, **params) -> list[dict]:
    r = at_get(sim, **params)
    j = json.loads(r.body)
    assert j["response"]["resultCd"] == "0", j
    assert j["response"]["numOfRows"] == str(len(j["response"]["items"]))
    return j["response"]["items"]


def test_flower_calendar(sim):
    mon = at_items(sim, baseDate="2026-11-16")
    assert len(mon) >= 800
    assert len(at_items(sim, baseDate="2026-11-17")) < 40  # Tuesday: residual trading only
    assert at_items(sim, baseDate="2026-11-22") == []  # Sunday
    assert at_items(sim, baseDate="2026-10-09") == []  # 한글날 (Friday)
    assert at_items(sim, baseDate="2026-09-25") == []  # 추석 연휴 (Friday)
    assert 100 <= len(at_items(sim, baseDate="2026-11-17", flowerGubn=2)) <= 300  # 관엽 Tuesday
    assert at_items(sim, baseDate="2026-11-22", flowerGubn=2) == []
    r = json.loads(at_get(sim, baseDate="2026-11-22").body)
    assert r == {"response": {"resultCd": "0", "resultMsg": "OK", "numOfRows": "0", "items": []}}
    assert at_items(sim, baseDate="20261116") == []  # wrong date format: silently empty
    assert at_items(sim, baseDate="2026-11-16", flowerGubn=9) == []
    assert at_items(sim, baseDate="2026-12-01") == []  # future


def test_flower_row_invariants(sim):
    keys = ["saleDate", "flowerGubn", "pumName", "goodName", "lvNm", "maxAmt", "minAmt", "avgAmt", "totAmt", "totQty"]
    day = dt.date(2026, 11, 2)
    while day < TODAY - dt.timedelta(days=1):
        for g, text in ((1, "절화"), (2, "관엽"), (3, "난"), (4, "춘란")):
            its = at_items(sim, baseDate=day.isoformat(), flowerGubn=g)
            tuples = set()
            prev_qty = None
            for it in its:
                assert list(it) == keys and all(isinstance(v, str) for v in it.values())
                assert it["saleDate"] == day.isoformat() and it["flowerGubn"] == text
                mx, mn, avg, tot, qty = (int(it[k]) for k in ("maxAmt", "minAmt", "avgAmt", "totAmt", "totQty"))
                assert mn <= avg <= mx and qty > 0
                assert avg == (2 * tot + qty) // (2 * qty)  # ROUND(SUM(TOT_AMT)/SUM(TOT_QTY)), half up
                assert 50 <= avg <= 1_000_000
                tuples.add((it["saleDate"], it["flowerGubn"], it["pumName"], it["goodName"], it["lvNm"]))
                assert prev_qty is None or qty <= prev_qty
                prev_qty = qty
            assert len(tuples) == len(its)
        day += dt.timedelta(days=1)


def test_flower_paging_and_filters(sim):
    all_rows = at_items(sim, baseDate="2026-11-16")
    paged = []
    for page in range(1, 100):
        its = at_items(sim, baseDate="2026-11-16", countPerPage=250, currentPage=page)
        if not its:
            break
        assert len(its) <= 250
        paged += its
    assert paged == all_rows
    roses = at_items(sim, baseDate="2026-11-16", pumName="장미")
    assert roses and all("장미" in i["pumName"] for i in roses)
    mini = at_items(sim, baseDate="2026-11-16", goodName="미니")
    assert mini and all("미니" in i["goodName"] for i in mini)
    ten = json.loads(at_get(sim, baseDate="2026-11-16", countPerPage=None).body)
    assert ten["response"]["numOfRows"] == "10"


def test_flower_xml(sim):
    r = at_get(sim, baseDate="2026-11-16", dataType="xml", countPerPage=3)
    body = r.body.decode()
    assert body.startswith(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><resultCd>0</resultCd>'
        "<resultMsg>OK</resultMsg><numOfRows>3</numOfRows><items><item><saleDate>2026-11-16"
        "</saleDate><flowerGubn>절화</flowerGubn>"
    )
    assert len(ET.fromstring(r.body).findall("./items/item")) == 3


def test_flower_late_settlement():
    sim = Simulator(today=dt.date(2026, 11, 20), aed_count=500)
    day = "2026-11-20"

    def snap():
        return {(i["pumName"], i["goodName"], i["lvNm"]): i for i in at_items(sim, baseDate=day)}

    same_day = snap()
    sim.today = dt.date(2026, 11, 21)
    next_day = snap()
    sim.today = dt.date(2026, 11, 22)
    final = snap()
    sim.today = dt.date(2026, 12, 31)
    assert snap() == final
    assert 0.45 * len(final) < len(same_day) < 0.75 * len(final)
    assert same_day.keys() <= final.keys() and next_day.keys() == final.keys()
    corrected = [k for k in final if final[k] != next_day[k]]
    assert 0 < len(corrected) < 0.1 * len(final)
    assert all(final[k]["avgAmt"] != next_day[k]["avgAmt"] for k in corrected)
    sim.today = dt.date(2026, 11, 19)
    assert snap() == {}


def test_flower_result_codes(live):
    srv, client = live
    base = {"kind": "f001", "serviceKey": "AT-KEY", "baseDate": "2026-11-16", "flowerGubn": 1, "dataType": "json"}

    def call(**kw):
        return client.get(srv.at_base_url, params={k: v for k, v in {**base, **kw}.items() if v is not None})

    assert call().json()["response"]["resultCd"] == "0"
    for code, msg in (
        (1, "서비스 키 오류입니다."),
        (2, "기간을 다시 설정하여 주십시오."),
        (3, "미승인된 공공데이터입니다. 관리자에게 문의하십시오."),
        (4, "금일 호출 건수가 만료 되었습니다."),
        (5, "파라미터 입력값이 잘못되었습니다.(kind|serviceKey|dataType)"),
    ):
        srv.sim.faults.at_result_code, srv.sim.faults.at_result_code_count = code, 1
        r = call()
        assert r.status_code == 200
        assert r.json() == {"response": {"resultCd": str(code), "resultMsg": msg, "numOfRows": None, "items": None}}
        assert call().json()["response"]["resultCd"] == "0"
    srv.sim.reset_faults()
    # key states
    srv.sim.faults.at_expired_keys = {"OLD"}
    srv.sim.faults.at_unapproved_keys = {"NEW"}
    assert call(serviceKey="OLD").json()["response"]["resultCd"] == "2"
    assert call(serviceKey="NEW").json()["response"]["resultCd"] == "3"
    r = call(serviceKey="UNKNOWN")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        r.json()
    # parameter errors
    r = call(dataType=None)
    assert r.headers["content-type"].startswith("application/xml")
    assert "<resultCd>5</resultCd>" in r.text
    assert call(kind=None).json()["response"]["resultCd"] == "5"
    assert call(serviceKey=None).json()["response"]["resultCd"] == "5"
    # daily quota
    srv.sim.reset_counters()
    srv.sim.faults.at_daily_quota = 3
    codes = [call().json()["response"]["resultCd"] for _ in range(4)]
    assert codes == ["0", "0", "0", "4"]
    # sample key: the 2018-08-16 rows, whatever the baseDate, no quota
    its = call(serviceKey="sample", baseDate="2026-11-16").json()["response"]["items"]
    assert its and all(i["saleDate"] == "2018-08-16" for i in its)


def test_flower_backfill_is_cheap():
    sim = Simulator(seed=99, today=TODAY, aed_count=500)
    t0 = time.perf_counter()
    n = 0
    for k in range(120):
        d = (TODAY - dt.timedelta(days=k + 2)).isoformat()
        for g in (1, 2, 3, 4):
            n += len(at_items(sim, baseDate=d, flowerGubn=g))
    assert n > 20000
    assert time.perf_counter() - t0 < 30


# --------------------------------------------------------------------------- server plumbing
def test_concurrent_requests_match_sequential(live):
    import concurrent.futures

    srv, client = live
    url = srv.egen_base_url + "/getAedFullDown"
    params = [
        {"serviceKey": "egen-key+/=", "pageNo": p, "numOfRows": 200, **({"_type": "json"} if p % 2 else {})}
        for p in range(1, 9)
    ]
    sequential = [client.get(url, params=p).content for p in params]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        parallel = list(ex.map(lambda p: httpx.get(url, params=p, headers=UA, timeout=10).content, params))
    assert parallel == sequential


def test_run_server_prints_urls_and_stops_on_ctrl_c():
    import signal
    import subprocess
    import sys

    p = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            "from aed_pipeline.simulator import run_server; run_server('127.0.0.1', 0, 20260101, 300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        egen = p.stdout.readline().strip().split(": ", 1)[1]
        at = p.stdout.readline().strip().split(": ", 1)[1]
        assert egen.endswith("/B552657/AEDInfoInqireService") and at.endswith("/api/returnData.api")
        r = httpx.get(egen + "/getAedFullDown", params={"serviceKey": "x", "numOfRows": 2}, headers=UA)
        assert r.status_code == 200 and len(items_of(r.content)) == 2
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 0


def test_snapshot_faults_for_the_integrity_checks():
    sim = Simulator(today=TODAY, aed_count=2000)
    client = httpx.Client(transport=simulator_transport(sim), headers=UA)
    params = {"serviceKey": "k", "numOfRows": 1000, "pageNo": 1}
    clean = text_items(client.get(FULL, params=params).content)
    total = int(ET.fromstring(client.get(FULL, params=params).content).findtext("./body/totalCount"))

    sim.faults.snapshot = "duplicate_serials"
    serials = [i["serialSeq"] for i in text_items(client.get(FULL, params=params).content)]
    assert len(serials) == len(clean) and len(set(serials)) < 0.85 * len(serials)

    sim.faults.snapshot = "short_page"
    body = client.get(FULL, params=params).content
    assert len(text_items(body)) == len(clean) // 2
    assert int(ET.fromstring(body).findtext("./body/totalCount")) == total

    sim.faults.snapshot = "inflated_total"
    body = client.get(FULL, params=params).content
    assert len(text_items(body)) == len(clean)
    assert int(ET.fromstring(body).findtext("./body/totalCount")) == total + total // 50


def test_flower_bad_rows_fault():
    sim = Simulator(today=dt.date(2026, 11, 25))
    client = httpx.Client(transport=simulator_transport(sim), headers=UA)
    params = {
        "kind": "f001",
        "serviceKey": "k",
        "baseDate": "2026-11-23",
        "flowerGubn": 1,
        "dataType": "json",
        "countPerPage": 1000,
    }
    clean = client.get(AT, params=params).json()["response"]["items"]
    sim.faults.at_bad_rows = True
    bad = client.get(AT, params=params).json()["response"]["items"]
    assert int(bad[0]["minAmt"]) > int(bad[0]["maxAmt"])
    assert bad[1]["totAmt"] == "N/A"
    assert bad[2:] == clean[2:]
