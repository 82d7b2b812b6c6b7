"""Deterministic synthetic AED registry (e-gen ``getAedFullDown``) that evolves day by day.

Storage is compact: a handful of numpy arrays per device (시도, 시군구, creation day, removal day,
edit cadence, 64-bit seed). A device's fields are only materialised when a page containing it is
rendered; the value of every field on a given date is an O(1)-ish function of (seed, device,
date) -- no history replay:

* device ``i`` is active on day ``d`` iff ``created[i] <= d < removed[i]``;
* a device is edited on the days ``t > created`` with ``(t + phase) % period == 0`` (period 250-700
  days, i.e. ~0.2-0.25 % of the devices change per day); edit ``k`` re-rolls one or two field
  groups; the value of a group is generated from (device seed, group, index of the last edit that
  touched that group);
* ``aed_count`` devices are active on :data:`EPOCH`; ~15 devices per 81k are added and ~14
  removed per day after it (scaled with the count) for :data:`HORIZON_DAYS` days.
"""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

EPOCH = dt.date(2026, 1, 1)
EPOCH_ORD = EPOCH.toordinal()
FIRST_CREATION_ORD = dt.date(2008, 3, 1).toordinal()
HORIZON_DAYS = 5 * 366
ADD_RATE = 15.0 / 81464.0  # devices added per day per active device on EPOCH
REMOVE_RATE = 14.0 / 81464.0
NEVER = 2**31 - 1

# --------------------------------------------------------------------------- geography
# (name, old name or None, share (admin registry 2025-11-17), area code, zip range, bbox lat/lon, 시군구)
_SIDO_RAW = [
    (
        "서울특별시",
        None,
        14052,
        "02",
        (1000, 8999),
        (37.43, 37.70, 126.80, 127.18),
        "종로구 중구 용산구 성동구 광진구 동대문구 중랑구 성북구 강북구 도봉구 노원구 은평구 서대문구 마포구 양천구 "
        "강서구 구로구 금천구 영등포구 동작구 관악구 서초구 강남구 송파구 강동구",
    ),
    (
        "부산광역시",
        None,
        4498,
        "051",
        (46000, 49999),
        (35.05, 35.30, 128.85, 129.22),
        "중구 서구 동구 영도구 부산진구 동래구 남구 북구 해운대구 사하구 금정구 강서구 연제구 수영구 사상구 기장군",
    ),
    (
        "대구광역시",
        None,
        3334,
        "053",
        (41000, 43999),
        (35.75, 36.25, 128.45, 128.75),
        "중구 동구 서구 남구 북구 수성구 달서구 달성군 군위군",
    ),
    (
        "인천광역시",
        None,
        4933,
        "032",
        (21000, 23999),
        (37.35, 37.65, 126.40, 126.80),
        "중구 동구 미추홀구 연수구 남동구 부평구 계양구 서구 강화군 옹진군",
    ),
    ("광주광역시", None, 2325, "062", (61000, 62999), (35.07, 35.25, 126.70, 127.00), "동구 서구 남구 북구 광산구"),
    ("대전광역시", None, 2168, "042", (34000, 35999), (36.20, 36.48, 127.27, 127.50), "동구 중구 서구 유성구 대덕구"),
    ("울산광역시", None, 1969, "052", (44000, 45999), (35.35, 35.70, 129.00, 129.45), "중구 남구 동구 북구 울주군"),
    ("세종특별자치시", None, 836, "044", (30000, 30199), (36.45, 36.70, 127.15, 127.40), "세종특별자치시"),
    (
        "경기도",
        None,
        15240,
        "031",
        (10000, 18999),
        (36.95, 38.20, 126.60, 127.80),
        "수원시 성남시 의정부시 안양시 부천시 광명시 평택시 동두천시 안산시 고양시 과천시 구리시 남양주시 오산시 "
        "시흥시 군포시 의왕시 하남시 용인시 파주시 이천시 안성시 김포시 화성시 광주시 양주시 포천시 여주시 연천군 "
        "가평군 양평군",
    ),
    (
        "강원특별자치도",
        "강원도",
        3072,
        "033",
        (24000, 26999),
        (37.05, 38.55, 127.10, 129.35),
        "춘천시 원주시 강릉시 동해시 태백시 속초시 삼척시 홍천군 횡성군 영월군 평창군 정선군 철원군 화천군 양구군 "
        "인제군 고성군 양양군",
    ),
    (
        "충청북도",
        None,
        3277,
        "043",
        (27000, 29999),
        (36.00, 37.20, 127.30, 128.60),
        "청주시 충주시 제천시 보은군 옥천군 영동군 증평군 진천군 괴산군 음성군 단양군",
    ),
    (
        "충청남도",
        None,
        4308,
        "041",
        (31000, 33999),
        (35.98, 37.05, 126.15, 127.60),
        "천안시 공주시 보령시 아산시 서산시 논산시 계룡시 당진시 금산군 부여군 서천군 청양군 홍성군 예산군 태안군",
    ),
    (
        "전북특별자치도",
        "전라북도",
        2993,
        "063",
        (54000, 56999),
        (35.30, 36.15, 126.45, 127.90),
        "전주시 군산시 익산시 정읍시 남원시 김제시 완주군 진안군 무주군 장수군 임실군 순창군 고창군 부안군",
    ),
    (
        "전라남도",
        None,
        5669,
        "061",
        (57000, 59999),
        (34.25, 35.50, 126.00, 127.85),
        "목포시 여수시 순천시 나주시 광양시 담양군 곡성군 구례군 고흥군 보성군 화순군 장흥군 강진군 해남군 영암군 "
        "무안군 함평군 영광군 장성군 완도군 진도군 신안군",
    ),
    (
        "경상북도",
        None,
        5222,
        "054",
        (36000, 40999),
        (35.60, 37.10, 127.80, 129.55),
        "포항시 경주시 김천시 안동시 구미시 영주시 영천시 상주시 문경시 경산시 의성군 청송군 영양군 영덕군 청도군 "
        "고령군 성주군 칠곡군 예천군 봉화군 울진군 울릉군",
    ),
    (
        "경상남도",
        None,
        4748,
        "055",
        (50000, 53999),
        (34.75, 35.90, 127.60, 129.20),
        "창원시 진주시 통영시 사천시 김해시 밀양시 거제시 양산시 의령군 함안군 창녕군 고성군 남해군 하동군 산청군 "
        "함양군 거창군 합천군",
    ),
    ("제주특별자치도", None, 2785, "064", (63000, 63999), (33.22, 33.52, 126.18, 126.95), "제주시 서귀포시"),
]


@dataclass(frozen=True)
class Sido:
    name: str
    old_name: str | None
    share: float
    area: str
    zip_lo: int
    zip_hi: int
    bbox: tuple[float, float, float, float]
    guguns: tuple[str, ...]


_total_share = sum(r[2] for r in _SIDO_RAW)
SIDOS: tuple[Sido, ...] = tuple(
    Sido(n, old, cnt / _total_share, area, z[0], z[1], bbox, tuple(g.split()))
    for (n, old, cnt, area, z, bbox, g) in _SIDO_RAW
)
SIDO_NAMES = tuple(s.name for s in SIDOS)
SEJONG_INDEX = SIDO_NAMES.index("세종특별자치시")

# global 시군구 table: (sido index, name, centre lat, centre lon, zip lo, zip hi, weight)
_GUGUN: list[tuple[int, str, float, float, int, int, float]] = []
GUGUN_OFFSETS: list[int] = []
for _si, _s in enumerate(SIDOS):
    GUGUN_OFFSETS.append(len(_GUGUN))
    _n = len(_s.guguns)
    _span = (_s.zip_hi - _s.zip_lo + 1) // _n
    for _gi, _g in enumerate(_s.guguns):
        _h = zlib.crc32(f"{_s.name}/{_g}".encode())
        _la0, _la1, _lo0, _lo1 = _s.bbox
        _clat = _la0 + (_la1 - _la0) * (0.15 + 0.7 * ((_h & 0xFFFF) / 0xFFFF))
        _clon = _lo0 + (_lo1 - _lo0) * (0.15 + 0.7 * (((_h >> 16) & 0xFFFF) / 0xFFFF))
        _w = 1.0 if _g.endswith("구") else (2.5 if _g.endswith("시") else 0.6)
        _zlo = _s.zip_lo + _gi * _span
        _GUGUN.append((_si, _g, _clat, _clon, _zlo, _zlo + max(_span, 1) - 1, _w))
GUGUNS = tuple(_GUGUN)

# --------------------------------------------------------------------------- value tables
_MAKERS = [  # (mfg, weight, models)
    ("(주)나눔테크", 19.8, ["NT-381.C", "ReHeart NT-381.C", "HeartKeeper", "Heart Keeper", "HeartPlus NT-180"]),
    ("씨유메디칼", 19.0, ["CU-SP1 Plus", "CU-SP1 Plus", "CU-SP1", "i-PAD CU-SP1", "NF1200"]),
    ("나눔테크", 12.0, ["NT-381.C", "HeartPlus NT-180", "ReHeart NT-381.C", "Heart-Keeper"]),
    ("(주)라디안", 8.2, ["HR-501-B", "HR-501-B", "HR-501", "HR-503"]),
    ("필립스", 4.8, ["HeartStart HS1 Defibrillator", "HeartStart FRx", "HeartStart OnSite"]),
    ("메디아나", 4.6, ["HeartSaver-A", "Heart Saver-A", "A15"]),
    ("(주)씨유메디칼시스템", 4.3, ["CU-SP1 Plus", "i-PAD CU-SP1", "NF-1200"]),
    ("라디안", 4.3, ["HR-501-B", "HR-501", "저출력심장충격기"]),
    ("(주)메디아나", 3.3, ["HeartSaver-A", "HeartSaver-A(A15)"]),
    ("HeartSine", 2.7, ["Samaritan PAD 360P", "Samaritan PAD 350P"]),
    ("라디안큐바이오", 1.5, ["Heart Guardian HR-501", "HR-501-B"]),
    ("씨유메디컬", 1.2, ["CU-SP1", "i-PAD CU-SP1"]),
    ("씨유메디칼시스템", 1.0, ["NF1200", "CU-SP1 Plus"]),
    ("ZOLL", 1.5, ["AED Plus", "AED 3"]),
    ("니혼코덴", 1.0, ["AED-2100K", "AED-3100"]),
    ("(주)나눔테크", 1.5, ["저출력심장충격기"]),
    ("메디아나", 1.2, ["HeartOn A15", "저출력심장충격기"]),
    ("한국엠에스디", 0.4, ["Powerheart G3", "Powerheart G5"]),
]
_MAKER_CUM = (np.cumsum([m[1] for m in _MAKERS]) / sum(m[1] for m in _MAKERS)).tolist()

_SURNAMES = "김김김김이이이박박최정강조윤장임한오서신권황안송류전홍고문양손배백허유남심노하곽성차주우구민"
_DONGS = [
    "중앙",
    "신정",
    "상계",
    "효자",
    "청운",
    "동산",
    "남산",
    "송림",
    "대화",
    "월평",
    "매탄",
    "도화",
    "신월",
    "가좌",
    "봉명",
    "산본",
    "정자",
    "수내",
    "금호",
    "행신",
    "화정",
    "부곡",
    "용호",
    "연산",
    "범어",
    "만수",
    "구월",
    "둔산",
    "송정",
    "상무",
    "옥동",
    "삼산",
    "호계",
    "명륜",
    "신흥",
    "영통",
    "장안",
    "평화",
    "하안",
    "철산",
]
_BRANDS = [
    "래미안",
    "푸르지오",
    "자이",
    "힐스테이트",
    "e편한세상",
    "롯데캐슬",
    "아이파크",
    "더샵",
    "주공",
    "현대",
    "삼성",
    "한신",
    "우성",
    "벽산",
    "대림",
    "쌍용",
    "부영",
    "한양",
    "극동",
    "동아",
    "금호어울림",
    "호반베르디움",
    "SK뷰",
]
_ROADS = [
    "중앙로",
    "시청로",
    "번영로",
    "대학로",
    "문화로",
    "평화로",
    "공원로",
    "역전로",
    "신촌로",
    "해안로",
    "중앙대로",
    "남부순환로",
    "월드컵로",
    "충장로",
    "동문로",
    "서문로",
    "새마을로",
    "학교길",
    "산업로",
    "강변로",
    "장미로",
    "은행나무길",
    "현충로",
    "용두로",
    "금강로",
    "효자로",
    "수목원로",
    "체육관로",
    "보건소길",
    "도청로",
]
_PLACES_GENERIC = [
    "1층 로비",
    "1층 현관",
    "출입구",
    "지하1층 엘리베이터 앞",
    "민원실",
    "경비실",
    "2층 복도",
    "안내데스크",
    "1층 엘리베이터 옆",
    "사무실 입구",
    "1층 사무국 앞",
    "휴게실",
    "정문 경비실",
    "강당 입구",
]


def _org_and_place(r: R, gugun: str) -> tuple[str, str]:
    x = r.random()
    dong = _DONGS[int(r.random() * len(_DONGS))]
    short = gugun[:-1] if len(gugun) > 2 else gugun
    if x < 0.40:
        brand = _BRANDS[int(r.random() * len(_BRANDS))]
        n = int(r.random() * 6)
        org = f"{dong}{brand}{'' if n < 3 else f'{n - 1}단지'}아파트 관리사무소"
        place = r.choice(
            [
                "관리사무소 내",
                "관리사무소 앞",
                f"{101 + int(r.random() * 12)}동 경비실",
                "커뮤니티센터 입구",
                "경비실",
                "주민공동시설 1층",
            ]
        )
    elif x < 0.46:
        org = f"{short}소방서 {dong}119안전센터"
        place = r.choice(["구급차(1호)", "구급차(2호)", "구급차", "119안전센터 사무실"])
    elif x < 0.54:
        kind = r.choice(["보건소", "보건지소", "보건진료소"])
        org = f"{short}{kind}" if kind == "보건소" else f"{dong}{kind}"
        place = r.choice(["1층 접수처", "진료실", "보건소 1층 로비", "현관"])
    elif x < 0.69:
        kind = r.choice(["초등학교", "초등학교", "중학교", "고등학교"])
        org = f"{short}{dong}{kind}" if r.random() < 0.3 else f"{dong}{kind}"
        place = r.choice(["보건실", "보건실 앞", "행정실 앞", "체육관 입구", "1층 중앙현관"])
    elif x < 0.72:
        org = f"{short}{r.choice(['병원', '의료원', '요양병원', '재활병원'])}"
        place = r.choice(["구급차", "응급실 앞", "1층 원무과"])
    elif x < 0.84:
        kind = r.choice(["행정복지센터", "주민센터", "청사", "우체국", "경찰서", "파출소"])
        org = (
            f"{short}{'시' if gugun.endswith('시') else '구' if gugun.endswith('구') else '군'}{kind}"
            if kind == "청사"
            else f"{dong}{'동' if kind in ('행정복지센터', '주민센터') else ''}{kind}"
        )
        place = r.choice(["민원실", "1층 민원실 입구", "현관", "당직실"])
    elif x < 0.87:
        org = r.choice([f"{short}역", f"{short}종합버스터미널", f"{short}여객선터미널"])
        place = r.choice(["대합실", "매표소 옆", "역무실", "고객안내센터"])
    elif x < 0.95:
        kind = r.choice(["종합사회복지관", "체육센터", "도서관", "문화센터", "노인복지관", "청소년수련관"])
        org = f"{short}{kind}" if r.random() < 0.5 else f"{dong}{kind}"
        place = r.choice(["1층 안내데스크", "도서관 현관 벽", "로비", "수영장 입구", "사무실"])
    else:
        org = r.choice(
            [
                f"{dong}산업(주)",
                f"(주){dong}물산",
                f"{dong}교회",
                f"{short}농협",
                f"{dong}새마을금고",
                f"{short}골프클럽",
                f"{dong}리조트",
            ]
        )
        place = r.choice(_PLACES_GENERIC)
    return org, place


_HOUR_TYPES = [  # (weight, weekday (stt, end) or None, sat, sun, hol)
    (0.40, ("0000", "2400"), ("0000", "2400"), ("0000", "2400"), ("0000", "2400")),
    (0.18, ("0900", "1800"), None, None, None),
    (0.07, ("0800", "1800"), None, None, None),
    (0.05, ("0900", "1730"), None, None, None),
    (0.09, ("0900", "1800"), ("0900", "1300"), None, None),
    (0.06, ("0900", "1800"), ("0900", "1800"), ("0900", "1800"), ("0900", "1800")),
    (0.05, ("0600", "2200"), ("0600", "2200"), ("0600", "2200"), None),
    (0.05, ("0830", "1730"), None, None, None),
    (0.05, ("0000", "2400"), ("0000", "2400"), None, None),
]
_HOUR_CUM = (np.cumsum([h[0] for h in _HOUR_TYPES]) / sum(h[0] for h in _HOUR_TYPES)).tolist()
_DAYS = ("mon", "tue", "wed", "thu", "fri")
_WK_KEYS = tuple((f"{d}SttTme", f"{d}EndTme") for d in _DAYS)

#: Alphabetical order of every element an item can carry (the real API sorts children).
ITEM_FIELDS = tuple(
    sorted(
        [
            "buildAddress",
            "buildPlace",
            "clerkTel",
            "manager",
            "managerTel",
            "mfg",
            "model",
            "org",
            "rnum",
            "serialSeq",
            "sido",
            "gugun",
            "wgs84Lat",
            "wgs84Lon",
            "zipcode1",
            "zipcode2",
            "sunFrtYon",
            "sunScdYon",
            "sunThiYon",
            "sunFurYon",
            "sunFifYon",
        ]
        + [f"{d}{k}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "hol") for k in ("SttTme", "EndTme")]
    )
)

# edit groups
G_PLACE, G_TEL, G_HOURS, G_MODEL, G_COORD, G_MANAGER = range(6)
N_GROUPS = 6


def _pick(cum: list[float], u: float) -> int:
    return min(bisect_right(cum, u), len(cum) - 1)


_M64 = (1 << 64) - 1


class _Draws:
    __slots__ = ()

    def random(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def gauss(self, mu: float, sigma: float) -> float:
        # Irwin-Hall approximation (sum of 4 uniforms), plenty for synthetic scatter
        return mu + sigma * (self.random() + self.random() + self.random() + self.random() - 2.0) * 1.7320508


class R(_Draws):
    """Tiny splitmix64 generator: free to seed (unlike ``random.Random``), deterministic everywhere."""

    __slots__ = ("s",)

    def __init__(self, seed: int):
        self.s = seed & _M64

    def random(self) -> float:
        self.s = z = (self.s + 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return ((z ^ (z >> 31)) >> 11) * 1.1102230246251565e-16


class S(_Draws):
    """A stream over pre-computed uniforms (one row of :func:`uniforms`)."""

    __slots__ = ("random",)

    def __init__(self, row: list[float]):
        self.random = iter(row).__next__


_C0 = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


def uniforms(seeds: np.ndarray, cols: int) -> np.ndarray:
    """Vectorised splitmix64: row j = the first ``cols`` uniforms of the stream seeded by seeds[j]."""
    with np.errstate(over="ignore"):
        z = seeds.astype(np.uint64)[:, None] + _C0 * np.arange(1, cols + 1, dtype=np.uint64)[None, :]
        z = (z ^ (z >> np.uint64(30))) * _C1
        z = (z ^ (z >> np.uint64(27))) * _C2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


BASE_DRAWS = 28
GROUP_DRAWS = 8


# --------------------------------------------------------------------------- the registry
class AedRegistry:
    """All devices ever known for one (seed, aed_count); compact numpy columns."""

    def __init__(self, seed: int, aed_count: int):
        self.seed = seed
        self.aed_count = aed_count
        rng = np.random.default_rng([seed, aed_count, 0xAED])
        n_base = aed_count
        n_extra = round(aed_count * ADD_RATE * HORIZON_DAYS)
        n = n_base + n_extra
        self.size = n
        # 시도 by share, 시군구 by weight within 시도
        shares = np.array([s.share for s in SIDOS])
        sido = rng.choice(len(SIDOS), size=n, p=shares).astype(np.uint8)
        gugun = np.empty(n, dtype=np.uint16)
        for si, s in enumerate(SIDOS):
            idx = np.flatnonzero(sido == si)
            off = GUGUN_OFFSETS[si]
            w = np.array([GUGUNS[off + k][6] for k in range(len(s.guguns))])
            gugun[idx] = off + rng.choice(len(w), size=len(idx), p=w / w.sum())
        created = np.empty(n, dtype=np.int32)
        u = rng.random(n_base)
        created[:n_base] = FIRST_CREATION_ORD + ((EPOCH_ORD - FIRST_CREATION_ORD) * u**0.75).astype(np.int32)
        created[n_base:] = EPOCH_ORD + 1 + rng.integers(0, HORIZON_DAYS, n_extra)
        order = np.argsort(created[n_base:], kind="stable")  # extras in creation order
        created[n_base:] = created[n_base:][order]
        removed = np.full(n, NEVER, dtype=np.int32)
        p_rem = min(0.9, REMOVE_RATE * HORIZON_DAYS)
        rem_mask = rng.random(n_base) < p_rem
        removed[:n_base][rem_mask] = EPOCH_ORD + 1 + rng.integers(0, HORIZON_DAYS, int(rem_mask.sum()))
        rem_x = rng.random(n_extra) < 0.1
        life = rng.integers(30, HORIZON_DAYS, n_extra)
        removed[n_base:][rem_x] = (created[n_base:] + life)[rem_x]
        self.sido = sido
        self.gugun = gugun
        self.created = created
        self.removed = removed
        self.period = rng.integers(250, 700, n).astype(np.int16)
        self.phase = rng.integers(0, 1000, n).astype(np.int16)
        self.dseed = rng.integers(0, 2**62, n, dtype=np.int64)
        self._active_cache: OrderedDict[tuple[int, str | None], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ active set
    def active_ids(self, day: dt.date, snapshot_mode: str | None = None) -> np.ndarray:
        """Device ids active on ``day`` (sorted; page order), optionally corrupted (``half_missing``)."""
        key = (day.toordinal(), "half" if snapshot_mode == "half_missing" else None)
        with self._lock:
            hit = self._active_cache.get(key)
            if hit is not None:
                self._active_cache.move_to_end(key)
                return hit
        d = day.toordinal()
        ids = np.flatnonzero((self.created <= d) & (self.removed > d))
        if key[1] == "half":
            ids = ids[(self.dseed[ids] & 1) == 0]
        with self._lock:
            self._active_cache[key] = ids
            while len(self._active_cache) > 8:
                self._active_cache.popitem(last=False)
        return ids

    def edits_until(self, i: int, d: int) -> int:
        return _edits(int(self.created[i]), int(self.period[i]), int(self.phase[i]), d)

    # ------------------------------------------------------------------ records
    def records(
        self, ids: np.ndarray, day_ord: int, *, full_down: bool = True, null_coordinates: bool = False
    ) -> list[dict[str, str]]:
        """Materialise the devices ``ids`` as they look on ``day_ord`` (only these are built)."""
        out: list[dict[str, str]] = []
        for a in range(0, len(ids), 4096):
            out.extend(self._records_chunk(ids[a : a + 4096], day_ord, full_down, null_coordinates))
        return out

    def _records_chunk(self, ids: np.ndarray, day_ord: int, full_down: bool, null_coordinates: bool):
        ds_arr = self.dseed[ids]
        dsl = ds_arr.tolist()
        created = self.created[ids].tolist()
        vers = [
            _versions(ds, _edits(c, p, ph, day_ord))
            for ds, c, p, ph in zip(dsl, created, self.period[ids].tolist(), self.phase[ids].tolist())
        ]
        base = uniforms(ds_arr, BASE_DRAWS).tolist()
        varr = np.array(vers, dtype=np.int64).reshape(len(ids), N_GROUPS)
        with np.errstate(over="ignore"):
            gseeds = (
                ds_arr.astype(np.uint64)[:, None] * np.uint64(31)
                + np.arange(N_GROUPS, dtype=np.uint64)[None, :] * np.uint64(1_000_003)
                + varr.astype(np.uint64) * np.uint64(7919)
            )
        grows = uniforms(gseeds.reshape(-1), GROUP_DRAWS).reshape(len(ids), N_GROUPS * GROUP_DRAWS).tolist()
        return [
            _record(i, si, gi, c, v, b, g, full_down, null_coordinates)
            for i, si, gi, c, v, b, g in zip(
                ids.tolist(), self.sido[ids].tolist(), self.gugun[ids].tolist(), created, vers, base, grows
            )
        ]

    def record(self, i: int, day_ord: int, *, full_down: bool = True, null_coordinates: bool = False) -> dict[str, str]:
        return self.records(np.array([i]), day_ord, full_down=full_down, null_coordinates=null_coordinates)[0]


def _edits(c: int, p: int, ph: int, d: int) -> int:
    if d <= c:
        return 0
    return (d + ph) // p - (c + ph) // p


_YYMMDD: dict[int, str] = {}


def _yymmdd(ordinal: int) -> str:
    v = _YYMMDD.get(ordinal)
    if v is None:
        v = _YYMMDD[ordinal] = dt.date.fromordinal(ordinal).strftime("%y%m%d")
    return v


def _versions(ds: int, k: int) -> list[int]:
    """For each edit group, the index (1..k) of the last edit that touched it, 0 = original value."""
    versions = [0] * N_GROUPS
    if k:
        seen = 0
        for e in range(k, 0, -1):
            h = ((ds >> 3) * 0x9E3779B1 + e * 0x85EBCA77) & 0xFFFFFFFF
            g1 = h % N_GROUPS
            groups = (g1,) if (h >> 8) % 10 < 7 else (g1, (h >> 12) % N_GROUPS)
            for g in groups:
                if not versions[g]:
                    versions[g] = e
                    seen += 1
            if seen == N_GROUPS:
                break
    return versions


def _record(
    i: int,
    si: int,
    gi: int,
    created: int,
    versions: list[int],
    base: list[float],
    grows: list[float],
    full_down: bool,
    null_coordinates: bool,
) -> dict[str, str]:
    s = SIDOS[si]
    _, gname, clat, clon, zlo, zhi, _w = GUGUNS[gi]
    r = S(base)

    def grng(g: int) -> S:
        return S(grows[g * GROUP_DRAWS : (g + 1) * GROUP_DRAWS])

    rec: dict[str, str] = {}
    dirt = r.random()  # one draw decides the (rare) dirty-value class of this device
    # --- fixed attributes (never edited)
    zipc = zlo + int(r.random() * (zhi - zlo + 1))
    z5 = f"{zipc:05d}"
    rec["zipcode1"] = z5[:3]
    rec["zipcode2"] = z5[3:]
    rec["serialSeq"] = f"{z5[:3]}-{_yymmdd(created)}-{i % 1_000_000:06d}"
    org, place0 = _org_and_place(r, gname)
    rec["org"] = org
    road = _ROADS[int(r.random() * len(_ROADS))]
    num = 1 + int(r.random() * 300)
    addr = f"{road} {num}"
    if r.random() < 0.3:
        addr += f", {r.choice(['본관', '별관', '1층', '2층', '지하1층', '관리동'])}"
    if r.random() < 0.5:
        addr += f" ({_DONGS[int(r.random() * len(_DONGS))]}동)"
    if 0.9950 <= dirt < 0.9962:
        addr = addr.replace(" ", "  ", 1)
    sido_name = s.name
    if s.old_name and dirt < 0.03:
        sido_name = s.old_name
    prefix = f"{s.name} {gname} " if si != SEJONG_INDEX else f"{s.name} "
    if full_down:
        rec["buildAddress"] = (prefix + addr) if si == SEJONG_INDEX else addr
        if not (dirt >= 0.9998):
            rec["sido"] = sido_name
            rec["gugun"] = gname
    else:
        rec["buildAddress"] = prefix + addr
    # --- edit group: buildPlace
    rp = grng(G_PLACE)
    if versions[G_PLACE]:
        _, place0 = _org_and_place(rp, gname)
    rec["buildPlace"] = place0
    # --- clerkTel
    rt = grng(G_TEL)
    x = rt.random()
    if x < 0.05:
        pass
    elif x < 0.25:
        rec["clerkTel"] = f"010-{1000 + int(rt.random() * 9000)}-{int(rt.random() * 10000):04d}"
    else:
        mid = (100 + int(rt.random() * 900)) if rt.random() < 0.5 else (1000 + int(rt.random() * 9000))
        rec["clerkTel"] = f"{s.area}-{mid}-{int(rt.random() * 10000):04d}"
    if 0.9962 <= dirt < 0.9977:
        rec["clerkTel"] = (
            f"{s.area}{int(rt.random() * 10**7):07d}"
            if rt.random() < 0.5
            else f"{s.area}-{100 + int(rt.random() * 900)}-"
        )
    # --- manager (masked)
    rm = grng(G_MANAGER)
    rec["manager"] = _SURNAMES[int(rm.random() * len(_SURNAMES))] + "**"
    y = rm.random()
    if y < 0.65:
        rec["managerTel"] = "010********"
    elif y < 0.85:
        rec["managerTel"] = f"{s.area}-" + "*" * (6 + int(rm.random() * 2))
    else:
        rec["managerTel"] = s.area + "*" * 8
    # --- mfg / model
    rmo = grng(G_MODEL)
    mk = _MAKERS[_pick(_MAKER_CUM, rmo.random())]
    rec["mfg"] = mk[0]
    rec["model"] = mk[2][int(rmo.random() * len(mk[2]))]
    if 0.9977 <= dirt < 0.9987:
        del rec["mfg"]
    # --- hours
    rh = grng(G_HOURS)
    ht = _HOUR_TYPES[_pick(_HOUR_CUM, rh.random())]
    wk, sat, sun, hol = ht[1], ht[2], ht[3], ht[4]
    for ks, ke in _WK_KEYS:
        rec[ks], rec[ke] = wk
    if sat:
        rec["satSttTme"], rec["satEndTme"] = sat
    if sun:
        rec["sunSttTme"], rec["sunEndTme"] = sun
    if hol:
        rec["holSttTme"], rec["holEndTme"] = hol
    flag = "Y" if sun else "N"
    flags = [flag] * 5
    if rh.random() < 0.03:
        flags[int(rh.random() * 5)] = "N" if flag == "Y" else "Y"
    rec["sunFrtYon"], rec["sunScdYon"], rec["sunThiYon"], rec["sunFurYon"], rec["sunFifYon"] = flags
    # --- coordinates
    rc = r
    lat = clat + rc.gauss(0, 0.03)
    lon = clon + rc.gauss(0, 0.03)
    la0, la1, lo0, lo1 = s.bbox
    lat = min(max(lat, la0), la1)
    lon = min(max(lon, lo0), lo1)
    if versions[G_COORD]:
        rcc = grng(G_COORD)
        lat += rcc.uniform(-0.0005, 0.0005)
        lon += rcc.uniform(-0.0005, 0.0005)
    if null_coordinates or 0.9987 <= dirt < 0.9993:
        pass  # coordinates absent
    elif 0.9993 <= dirt < 0.9997:  # outside Korea: swapped or zero
        if rc.random() < 0.5:
            rec["wgs84Lat"], rec["wgs84Lon"] = f"{lon:.10f}", f"{lat:.10f}"
        else:
            rec["wgs84Lat"], rec["wgs84Lon"] = "0", "0"
    elif rc.random() < 0.03:  # float noise as in the guide's full-down example
        rec["wgs84Lat"], rec["wgs84Lon"] = repr(lat), repr(lon)
    else:
        rec["wgs84Lat"], rec["wgs84Lon"] = f"{lat:.10f}", f"{lon:.10f}"
    return rec


# --------------------------------------------------------------------------- cache
_REG_CACHE: OrderedDict[tuple[int, int], AedRegistry] = OrderedDict()
_REG_LOCK = threading.Lock()


def get_registry(seed: int, aed_count: int) -> AedRegistry:
    """Registry for (seed, count), kept in a small LRU (4 entries)."""
    key = (seed, aed_count)
    with _REG_LOCK:
        reg = _REG_CACHE.get(key)
        if reg is not None:
            _REG_CACHE.move_to_end(key)
            return reg
        reg = AedRegistry(seed, aed_count)
        _REG_CACHE[key] = reg
        while len(_REG_CACHE) > 4:
            _REG_CACHE.popitem(last=False)
        return reg
