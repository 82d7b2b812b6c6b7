"""Deterministic synthetic aT 화훼공판장(양재) auction results (f001), on the real calendar.

Final rows for (seed, sale date, flowerGubn) are a pure function of those three values:

* 절화 (1): Mon/Wed/Fri formal auctions, 800-1,400 rows; Tue/Thu/Sat residual trading, < 40 rows;
* 관엽 (2): Tue and Fri, 100-300 rows;
* 난 (3): Mon and Thu, 20-60 rows;
* 춘란 (4): Wed and Sat, on about half of them 1-12 rows;
* every group is empty on Sundays and Korean public holidays (``holidays.KR``).

What is *served* for a sale date D depends on the simulator's "today" (late settlement):
D > today: no rows; D == today: a partial day (~60 % of the rows); D == today - 1: all rows, but ~4 %
of them carry provisional prices that differ from the final ones; D <= today - 2: the final rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from dataclasses import dataclass

import holidays

from .aed_data import R

GUBN_TEXT = {1: "절화", 2: "관엽", 3: "난", 4: "춘란"}

_COLORS = ["(혼합)", "(옐로우)", "(핑크)", "(화이트)", "(레드)", "(퍼플)", "(오렌지)", "(그린)", "(미니)", "(스프레이)"]

# 품목: (base price 원/속, weight, 품종 names)
_CUT = {
    "장미": (
        6000,
        10,
        "블론디 메두사 샤로트 푸에고 비탈 레드나오미 하이매직 스위트에스키모 오션송 핑크몬디알 몬디알 "
        "아발란체 데이지 엘토로 카푸치노 러브리핑크 로즈힐 골든게이트 캔디아발란체 쉬머 라디오 비비안 "
        "그랑프리 코랄리프 보고 페니레인 알리사 얼루어 디바 미니(혼합)",
    ),
    "국화": (
        5000,
        9,
        "테데오옐로우 신명 상그릴라 설악 백장미소국 이소국(옐로우) 백마 정흥 신마 화이트캐슬 "
        "피에로 레미 핑크퐁퐁 그린퐁퐁 옐로우퐁퐁 세이첼시 노블와인 선샤인 마그넘 아트화이트 "
        "코코아 스프레이(혼합) 폼폰(혼합) 대국(백색) 대국(황색)",
    ),
    "백합": (
        12000,
        5,
        "메두사 시베리아 소르본 티버 옐로윈 르바론 로빈 파스칼 콘카도르 돈나 아카풀코 "
        "마르코폴로 오리엔탈(혼합) 나무달리",
    ),
    "튤립": (
        8000,
        3,
        "퍼플프린스 스트롱골드 레드프린세스 화이트프린스 핑크다이아몬드 엔젤릭 퀸오브나이트 겹튤립(혼합) 잉글랜드",
    ),
    "카네이션": (
        5000,
        5,
        "돈페드로 노비아 문라이트 네스 코마치 베이비핑크 다이아나 스프레이(혼합) 레드스타 체리오 마스터 화이트라이언",
    ),
    "거베라": (
        4000,
        5,
        "미니(혼합) 레드엘레강스 핑크엘레강스 화이트스노우 선웨이 오렌지팁 레몬아이스 "
        "스위트하트 벨라 에스키모 파파야 탱고",
    ),
    "수국": (15000, 3, "화이트 핑크 블루 그린 퍼플 앤티크(그린) 앤티크(핑크) 에메랄드 매직(혼합)"),
    "리시안사스": (
        8000,
        5,
        "보야지화이트 보야지핑크 코레리퍼플 로지나 셀럽 미니(혼합) 아이보리 그린 라임그린 피코티 볼레로 보니타",
    ),
    "프리지아": (4000, 2, "샤이니골드 아테네 오버징 엘레강스 화이트(혼합)"),
    "칼라": (10000, 2, "웨딩마치 크리스탈블러쉬 골드메달 핑크(혼합) 퍼플(혼합)"),
    "아이리스": (5000, 2, "블루매직 프로페서블라우 화이트반디"),
    "글라디올러스": (5000, 1, "화이트 레드 핑크 옐로우"),
    "금어초": (5000, 2, "포토마크 라이트핑크 화이트 옐로우 레드"),
    "알스트로메리아": (6000, 3, "에버레스트 사바나 마티스 화이트(혼합) 핑크(혼합) 옐로우킹 레드선"),
    "작약": (20000, 1, "사라베르나르 코랄참 레드참 화이트(혼합)"),
    "해바라기": (7000, 1, "빈센트 선리치 테디베어"),
    "과꽃": (4000, 2, "코코토(미니) 씨스타화이트 코코토화이트(미니) 레지스트 아즈미화이트 라이트블루"),
}
_FOLIAGE = {
    "산세베리아": (15000, 3, "스투키 하니 골든하니 문샤인 로렌티"),
    "몬스테라": (25000, 3, "델리시오사 아단소니 무늬(혼합)"),
    "고무나무": (20000, 3, "뱅갈 벵갈무늬 떡갈 인도"),
    "행운목": (12000, 2, "대 중 소 토막"),
    "금전수": (18000, 3, "대 중 소"),
    "스파티필름": (9000, 2, "대 중 소 센세이션"),
    "아레카야자": (30000, 2, "대 중 소"),
    "율마": (8000, 2, "대 중 소 토피어리"),
    "홍콩야자": (10000, 2, "대 중 소 무늬"),
    "드라세나": (12000, 2, "콤팩타 와네키 레몬라임 마지나타"),
    "안스리움": (15000, 2, "레드 핑크 화이트"),
    "필로덴드론": (20000, 2, "콩고 셀로움 버킨 제나두"),
    "칼라데아": (15000, 1, "오르비폴리아 진저 마코야나"),
    "아글라오네마": (12000, 1, "스노우사파이어 레드 실버퀸"),
    "다육식물": (3000, 2, "(혼합) 에케베리아 세덤 하월시아"),
    "호야": (9000, 1, "카르노사 케리 무늬"),
}
_ORCHID = {
    "호접란": (25000, 5, "화이트 핑크 옐로우 미니(혼합) 대륜(혼합) 2대 3대"),
    "심비디움": (40000, 2, "레드 옐로우 그린 미니(혼합)"),
    "덴드로비움": (20000, 2, "킹기아넘 노빌(혼합) 화이트"),
    "온시디움": (18000, 1, "트윙클 샤리베이비 옐로우"),
    "동양란": (35000, 3, "보세란 금화산 대명철골소심 관음소심 옥화"),
    "석곡": (15000, 1, "(혼합) 황화 백화"),
}
_SPRING_ORCHID = {
    "춘란": (80000, 3, "소심 홍화 황화 주금화 중투 서반 단엽 복륜 두화"),
    "한국춘란": (150000, 2, "중투 복륜 산반 소심 홍화"),
    "중국춘란": (60000, 1, "송매 용자 환구하정"),
}

_CUT_GRADES = ("특1", "특2", "특3", "상1", "상2", "상3", "보1", "보2")
_POT_GRADES = ("특", "상", "보", "중", "하")
_GRADE_FACTOR = {
    "특1": 1.5,
    "특2": 1.25,
    "특3": 1.05,
    "상1": 0.9,
    "상2": 0.75,
    "상3": 0.62,
    "보1": 0.5,
    "보2": 0.4,
    "특": 1.4,
    "상": 1.0,
    "보": 0.75,
    "중": 0.6,
    "하": 0.45,
}


@dataclass(frozen=True)
class _Entry:
    pum: str
    good: str
    lv: str
    price: float
    weight: float


def _catalogue(table: dict, grades: tuple[str, ...], min_goods: int) -> tuple[_Entry, ...]:
    out = []
    for pum, (price, weight, goods) in table.items():
        names = goods.split()
        extra = [f"{n}{c}" for c in _COLORS for n in names[:3] if f"{n}{c}" not in names]
        need = max(min_goods * weight // 10, len(names))
        names = (names + extra)[: max(need, len(names))]
        for g in names:
            vf = 0.6 + 0.9 * ((zlib.crc32(f"{pum}/{g}".encode()) & 0xFFFF) / 0xFFFF)
            for lv in grades:
                out.append(_Entry(pum, g, lv, price * vf * _GRADE_FACTOR[lv], weight))
    return tuple(out)


CATALOGUES = {
    1: _catalogue(_CUT, _CUT_GRADES, 40),
    2: _catalogue(_FOLIAGE, _POT_GRADES, 10),
    3: _catalogue(_ORCHID, _POT_GRADES, 10),
    4: _catalogue(_SPRING_ORCHID, _POT_GRADES, 10),
}


@functools.lru_cache(maxsize=64)
def _kr_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.KR(years=year).keys())


def is_closed(day: dt.date) -> bool:
    """Sundays and Korean public holidays: no auction in any group."""
    return day.weekday() == 6 or day in _kr_holidays(day.year)


def _target_rows(r: R, day: dt.date, gubn: int) -> int:
    wd = day.weekday()  # Mon=0
    if gubn == 1:
        return r.randint(800, 1400) if wd in (0, 2, 4) else r.randint(4, 38)
    if gubn == 2:
        return r.randint(100, 300) if wd in (1, 4) else 0
    if gubn == 3:
        return r.randint(20, 60) if wd in (0, 3) else 0
    if gubn == 4:
        return r.randint(1, 12) if wd in (2, 5) and r.random() < 0.5 else 0
    return 0


Row = tuple  # (saleDate, gubnText, pum, good, lv, max, min, avg, totAmt, totQty)


def _half_up_div(a: int, b: int) -> int:
    return (2 * a + b) // (2 * b)


def _make_row(r: R, day_s: str, gtext: str, e: _Entry, gubn: int, season: float) -> list:
    if gubn == 1:
        qty = int(10 + (r.random() ** 2.2) * 3500)
    elif gubn == 2:
        qty = int(3 + (r.random() ** 2) * 400)
    else:
        qty = int(1 + (r.random() ** 2) * 80)
    price = e.price * season * (0.7 + 0.6 * r.random())
    price = max(100.0, price)
    tot_amt = round(price * qty / 10.0) * 10
    avg = _half_up_div(tot_amt, qty)
    if qty <= 2:
        mn = mx = avg
    else:
        mn = min(avg, int(avg * (0.35 + 0.5 * r.random())) // 10 * 10)
        mx = max(avg, -(-int(avg * (1.1 + 0.9 * r.random())) // 10) * 10)
    return [day_s, gtext, e.pum, e.good, e.lv, mx, mn, avg, tot_amt, qty]


@functools.lru_cache(maxsize=2048)
def final_rows(seed: int, day: dt.date, gubn: int) -> tuple[tuple, ...]:
    """All final rows of a day, ordered by totQty desc (ties: pum, good, lv)."""
    if gubn not in CATALOGUES or is_closed(day):
        return ()
    r = R(seed * 1_000_003 + day.toordinal() * 17 + gubn)
    n = _target_rows(r, day, gubn)
    if n <= 0:
        return ()
    cat = CATALOGUES[gubn]
    n = min(n, len(cat))
    # weighted sample without replacement (Efraimidis-Spirakis keys)
    keyed = sorted(range(len(cat)), key=lambda j: r.random() ** (1.0 / cat[j].weight), reverse=True)[:n]
    season = 1.0 + 0.25 * (1 if day.month in (2, 5, 12) else 0) - 0.15 * (1 if day.month in (7, 8) else 0)
    day_s = day.isoformat()
    gtext = GUBN_TEXT[gubn]
    rows = [_make_row(r, day_s, gtext, cat[j], gubn, season) for j in keyed]
    rows.sort(key=lambda x: (-x[9], x[2], x[3], x[4]))
    return tuple(tuple(x) for x in rows)


def _h(row: tuple, salt: int) -> int:
    return zlib.crc32(f"{salt}|{row[2]}|{row[3]}|{row[4]}".encode())


def served_rows(seed: int, day: dt.date, gubn: int, today: dt.date) -> list[tuple]:
    """Rows as served on ``today`` for sale date ``day`` (see module docstring: late settlement)."""
    if day > today:
        return []
    rows = final_rows(seed, day, gubn)
    if day == today:
        return [x for x in rows if _h(x, seed) % 100 < 60]
    if day == today - dt.timedelta(days=1):
        out = []
        for x in rows:
            if _h(x, seed + 1) % 100 < 4:
                mx, mn, _avg, tot, qty = x[5:10]
                tot2 = round(tot * 0.96 / 10.0) * 10 or tot + 10
                avg2 = _half_up_div(tot2, qty)
                x = (*x[:5], max(mx, avg2), min(mn, avg2), avg2, tot2, qty)
            out.append(x)
        return out
    return list(rows)
