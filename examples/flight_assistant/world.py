"""The flight-assistant world: a deterministic, endless stream of realistic demo messages.

Pure (no Kafka): the producer sends what `DemoWorld.messages()` yields, and tests compare what
came back with the same sequence. Same seed and start give byte-identical messages; with a
`clock`, only the event times change, never the content.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from examples.flight_assistant import stream_by_name

STREAMS: tuple[str, ...] = ("flights", "bookings", "policies", "feedback")
BAD_HEADER = "freshlake-demo-bad"
JSON_BAD_KINDS = ("not_json", "missing_required", "wrong_type", "missing_key")
DEBEZIUM_BAD_KINDS = ("not_json", "missing_required", "wrong_type", "bad_envelope")
_WEIGHTS = {"flights": 45, "bookings": 30, "feedback": 20, "policies": 5}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class DemoMessage:
    """One Kafka message to send; `value=None` is a tombstone."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @property
    def bad_kind(self) -> str | None:
        """The kind of malformation of a deliberately bad message, None for good ones."""
        for name, value in self.headers:
            if name == BAD_HEADER:
                return value.decode()
        return None


# --- the cast -----------------------------------------------------------------------------------

AIRLINES = {  # code -> (name, airports it flies from)
    "UA": ("United Airlines", ("SFO", "ORD", "DEN", "EWR", "IAD")),
    "DL": ("Delta Air Lines", ("ATL", "SEA", "LAX", "BOS")),
    "AA": ("American Airlines", ("DFW", "MIA", "ORD", "LAX")),
    "BA": ("British Airways", ("LHR",)),
    "AF": ("Air France", ("CDG",)),
}
US_AIRPORTS = ("JFK", "LGA", "EWR", "SFO", "LAX", "ORD", "BOS", "SEA", "DEN", "ATL", "MIA", "DFW")
NEW_YORK = ("JFK", "LGA", "EWR")
CITIES = {
    "JFK": "New York",
    "LGA": "New York",
    "EWR": "New York",
    "SFO": "San Francisco",
    "LAX": "Los Angeles",
    "ORD": "Chicago",
    "BOS": "Boston",
    "SEA": "Seattle",
    "DEN": "Denver",
    "ATL": "Atlanta",
    "MIA": "Miami",
    "DFW": "Dallas",
    "LHR": "London",
    "CDG": "Paris",
    "IAD": "Washington",
}
DELAY_REASONS = ("weather", "crew availability", "aircraft maintenance", "air traffic control")
CANCEL_REASONS = (
    "severe weather",
    "crew availability",
    "aircraft maintenance",
    "air traffic control",
)
FIRST = tuple("Ana Ben Chloe David Elena Farid Grace Hiro Ines Jonas Kemi Liam Maya Noah".split())
LAST = tuple("Garcia Smith Nguyen Müller Okafor Rossi Kim Dubois Patel Johnson Silva Cohen".split())
FARES = ("economy", "economy", "economy", "premium_economy", "business", "first")


def _sentences(block: str) -> tuple[str, ...]:
    """Sentence templates written as wrapped prose: one sentence per line-run, split at '. '."""
    return tuple(s.strip() for s in re.split(r"(?<=[.])\s+(?=[A-Z])", " ".join(block.split())))


SCOPES = _sentences("""
    For flights within the United States, the following applies. For flights departing from an
    airport in the European Union or the United Kingdom, these rules apply in addition to local
    passenger-rights regulations. On transatlantic flights between North America and Europe, the
    following terms apply. For codeshare itineraries, the rules of the operating carrier apply,
    and we coordinate with the partner airline on your behalf. For bookings made through a travel
    agency or an online travel site, the following applies. For award tickets booked with frequent
    flyer miles, the following terms apply. For group bookings of ten or more passengers, the
    following applies.
""")
GENERIC = _sentences("""
    You can manage your booking online, in the mobile app, or by calling customer service; wait
    times are usually shortest in the app. Keep your booking reference and e-ticket number at hand
    when you contact us, as both are needed to locate your reservation. Requests are normally
    processed within {days} days, although peak travel periods can add a few days. Where this
    policy and the law of the country of departure differ, the rule that is more favourable to the
    passenger applies. Keep receipts for meals, transport and accommodation, because
    reimbursement requests without receipts cannot be processed. Notifications about changes are
    sent by email and text message to the contact details in your booking, so please keep them up
    to date. This policy does not limit any rights you may have under applicable consumer
    protection law. Passengers travelling together on one booking are handled together, unless one
    of them asks to be separated from the reservation. Fees quoted in this document are per
    passenger and per direction, in the currency of the country where the ticket was issued. Elite
    members of the frequent flyer programme may be offered additional options, subject to
    availability.
""")
# policy id suffix -> (title, category, sentence templates)
POLICIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "rebooking": (
        "Rebooking after flight cancellations and schedule changes",
        "rebooking",
        _sentences("""
        If we cancel your flight, we automatically rebook you on the next available flight to your
        destination at no additional cost. You receive the new itinerary by email and in the app,
        usually within an hour of the cancellation. If the new itinerary does not suit you, you may
        choose another flight on the same route within {days} days of the original departure date
        without a change fee or fare difference. When no seat is available on our own flights
        within {hours} hours, we may rebook you on a partner airline or, where practical, on a
        train. You may also travel from or to a nearby airport, for example Newark or LaGuardia
        instead of JFK, and we cover ground transport between the airports. Rebooking is offered in
        the same cabin where possible; if only a lower cabin is available, the difference in fare
        is refunded. If you decide not to travel at all, you can cancel the rest of the trip and
        request a refund instead of rebooking. For schedule changes of more than {hours} hours, the
        same free rebooking options apply as for a cancellation. Passengers with connecting flights
        are rebooked through to their final destination, and checked baggage is re-routed
        automatically. When the rebooking requires an overnight stay, we provide a hotel room and
        transport, unless the cancellation was caused by weather or air traffic control. Standby on
        an earlier flight the same day is free when your flight has been cancelled or delayed by
        more than {hours} hours.
    """),
    ),
    "refunds": (
        "Refunds for cancelled and significantly changed flights",
        "refunds",
        _sentences("""
        If your flight is cancelled you are entitled to a full refund, regardless of the fare type,
        if you choose not to travel. The refund covers the unused part of the ticket, including
        taxes, airport charges and optional services you could not use, such as seat selection or
        extra baggage. Refunds are issued to the original form of payment within {days} days for
        card payments; cash and cheque payments can take longer. If your flight is delayed by more
        than {hours} hours or its schedule changes significantly, you may also cancel and request a
        full refund. Instead of a refund you may accept a travel credit worth {percent} percent of
        the ticket value, valid for twelve months. Non-refundable fares stay non-refundable when
        you cancel voluntarily, but government taxes and airport charges are always returned on
        request. A refund for a cancelled flight can be requested online with the booking reference
        and the passenger's last name. When only part of a round trip is cancelled, the unused
        flights are refunded and you may keep the remaining flights. Refunds are never reduced by a
        cancellation fee when the airline cancelled the flight. If you accepted a rebooking and
        change your mind, you can still request a refund as long as you have not started the new
        journey. Tickets bought with miles are refunded by returning the miles, together with any
        taxes paid in cash.
    """),
    ),
    "baggage": (
        "Checked and carry-on baggage allowance",
        "baggage",
        _sentences("""
        Economy passengers may bring one carry-on bag of up to 56 x 36 x 23 centimetres plus one
        personal item that fits under the seat in front. Each checked bag may weigh up to {kg}
        kilograms and measure up to 158 centimetres in total (length plus width plus height). The
        first checked bag costs {fee} dollars on domestic economy fares; business and first class
        passengers check two bags of up to 32 kilograms free. Bags between {kg} and 32 kilograms
        are accepted for an overweight fee of {fee} dollars; heavier bags must be shipped as cargo.
        Lithium batteries, power banks and e-cigarettes must travel in the cabin and are not
        permitted in checked baggage. Sports equipment such as golf bags and skis counts as one
        checked bag if it stays within the weight limit. If your checked bag is delayed, report it
        at the baggage service desk before leaving the airport and keep the file reference. For
        delayed bags we reimburse reasonable expenses for essentials, up to {amount} dollars a day
        for up to five days. Damage must be reported within seven days of receiving the bag, and
        missing items within 21 days. When a flight is full, carry-on bags may be checked at the
        gate free of charge. Liquids in carry-on baggage must be in containers of 100 millilitres
        or less, packed in one clear resealable bag.
    """),
    ),
    "delay-compensation": (
        "Compensation for long delays and cancellations",
        "compensation",
        _sentences("""
        Under EU Regulation 261/2004 and the equivalent UK rules, passengers departing from the EU
        or UK, or arriving there on an EU or UK airline, may be entitled to fixed compensation. The
        compensation is 250 euros for flights up to 1,500 kilometres, 400 euros for flights between
        1,500 and 3,500 kilometres, and 600 euros for longer flights. Compensation applies when you
        arrive more than three hours late, when the flight is cancelled less than 14 days before
        departure, or when you are denied boarding. No compensation is due when the delay is caused
        by extraordinary circumstances, such as severe weather, air traffic control restrictions or
        security risks. Crew shortages and technical problems found during routine maintenance are
        not extraordinary circumstances. For long-haul flights arriving between three and four
        hours late, the compensation may be reduced by half. While you wait, we provide meals and
        refreshments in proportion to the waiting time, and a hotel if an overnight stay becomes
        necessary. For delays of more than two hours on domestic US flights, meal vouchers worth
        {meal} dollars are offered at the gate or in the app. Claims can be submitted online up to
        two years after the flight, and we aim to answer within {days} days. Compensation is paid
        by bank transfer or card refund; vouchers are offered only if you agree to them in writing.
        Compensation is paid per passenger, including children with their own seat, but not for
        infants travelling on a lap.
    """),
    ),
    "missed-connections": (
        "Missed connections",
        "connections",
        _sentences("""
        If you miss a connecting flight because your first flight on the same ticket was delayed,
        we rebook you on the next available connection at no charge. Published minimum connection
        times apply; at JFK and Heathrow, international connections need at least 90 minutes. When
        connections are booked on separate tickets, the second airline is not obliged to rebook
        you, so allow at least {hours} hours between flights. Meal vouchers and, if needed, a hotel
        are provided when the missed connection was caused by the airline. Checked bags are
        transferred to your new connection automatically when the whole journey is on one ticket.
        If you reach your final destination more than three hours late on a journey from the EU,
        compensation may be due. Transfer desks are located after arrival security at Chicago
        O'Hare, Atlanta, Dallas Fort Worth, London Heathrow and Paris Charles de Gaulle. If you
        prefer not to continue after a missed connection, we fly you back to your origin and refund
        the unused ticket. The app shows your new connection and gate as soon as rebooking is
        complete, often before your first flight lands. On connections of more than {hours} hours,
        lounge access may be offered to premium passengers.
    """),
    ),
    "pets": (
        "Travelling with pets",
        "pets",
        _sentences("""
        Small cats and dogs may travel in the cabin in a soft-sided carrier that fits under the
        seat in front, up to 8 kilograms including the carrier. The in-cabin pet fee is {fee}
        dollars per direction, and no more than {n} pets are accepted in the cabin per flight. Pets
        are not accepted in the cabin on flights to the United Kingdom; they travel as cargo
        through an approved agent. Larger pets travel in the temperature-controlled hold in an
        approved crate, and summer embargoes apply when it is hotter than 29 degrees Celsius.
        Trained service dogs travel in the cabin free of charge when the required form is submitted
        at least 48 hours before departure. Snub-nosed breeds such as bulldogs and pugs are not
        accepted in the hold because of breathing risks. Pets must be at least 16 weeks old and,
        for international travel, have a microchip, rabies vaccination and health certificate. If
        your flight is cancelled, your pet is rebooked with you, and the pet fee is refunded if you
        decide not to travel. Pet reservations must be added in advance by calling customer
        service, as space is limited.
    """),
    ),
    "special-assistance": (
        "Special assistance and accessibility",
        "assistance",
        _sentences("""
        Passengers who need a wheelchair or help boarding can request assistance free of charge at
        least 48 hours before departure. Wheelchair users can check up to two mobility devices in
        addition to the normal baggage allowance. Battery-powered wheelchairs are accepted when the
        battery type and watt-hour rating are declared in advance. Passengers who are blind or have
        low vision may travel with a guide dog in the cabin at no charge. Pre-boarding is offered
        to passengers who need extra time or help to reach their seat. Unaccompanied minors between
        5 and 14 years old travel with an escort service for a fee of {fee} dollars per direction.
        If your flight is cancelled or rebooked, the assistance you requested moves automatically
        to the new flight. Passengers with a medical condition that could worsen during the flight
        should bring a medical clearance form from their doctor. Seats with movable armrests are
        held for passengers who need them until 24 hours before departure.
    """),
    ),
    "name-changes": (
        "Name corrections and ticket transfers",
        "tickets",
        _sentences("""
        Corrections of up to three characters in a passenger's name can be made free of charge
        before check-in. The name on the ticket must match the passport or government ID exactly,
        including middle names that appear on the document. Tickets are not transferable; a full
        name change requires cancelling the ticket and buying a new one. A name change after
        marriage or divorce is accepted with a copy of the legal document, free of charge.
        Corrections requested within {hours} hours of departure must be made by an agent at the
        airport. Swapping the first and last name fields counts as a minor correction and is free.
        Frequent flyer numbers can be added or corrected at any time before departure. A correction
        fee of {fee} dollars applies to larger changes that are not covered by a legal name change.
    """),
    ),
}
# (policy suffix, which flight it needs, query, answer); "" policy = a flight status question
FEEDBACK = (
    (
        "refunds",
        "cancelled",
        "My flight {flight_number} to {destination} was cancelled. Can I get my money back?",
        "Yes. If your flight is cancelled you are entitled to a full refund of the unused "
        "ticket, including taxes, even on a non-refundable fare. Request it online with your "
        "booking reference.",
    ),
    (
        "rebooking",
        "cancelled",
        "{flight_number} was cancelled, how do I still get to {destination}?",
        "You have been rebooked on the next available flight at no extra cost. "
        "If it does not suit you, pick another flight on the same route or a nearby airport, or "
        "cancel for a full refund.",
    ),
    (
        "delay-compensation",
        "delayed",
        "{flight_number} from {origin} is delayed {delay_minutes} "
        "minutes because of {reason}. Do I get compensation?",
        "If you depart from the EU or UK and "
        "arrive more than three hours late, 250 to 600 euros may be due, unless the cause is an "
        "extraordinary circumstance such as severe weather or air traffic control.",
    ),
    (
        "missed-connections",
        "delayed",
        "{flight_number} is late and I will miss my connection. What happens now?",
        "If both flights are on one ticket, we rebook you on the next "
        "connection at no charge and transfer your bags. Check the app for the new gate.",
    ),
    (
        "baggage",
        "",
        "Can I pack a power bank in my checked bag?",
        "No. Power banks and lithium batteries must travel in your carry-on bag.",
    ),
    (
        "baggage",
        "",
        "How heavy can my checked suitcase be?",
        "Each checked bag may weigh up to 23 "
        "kilograms in economy; heavier bags up to 32 kilograms pay an overweight fee.",
    ),
    (
        "pets",
        "",
        "Can my dog fly in the cabin with me to London?",
        "Not to the United Kingdom: "
        "pets travel there as cargo through an approved agent. Service dogs are the exception.",
    ),
    (
        "special-assistance",
        "",
        "I need a wheelchair at the airport, how do I ask for one?",
        "Request it free of charge in your booking at least 48 hours before departure.",
    ),
    (
        "name-changes",
        "",
        "My last name is misspelled on my ticket, can I fix it?",
        "Yes, corrections of up to three characters are free before check-in.",
    ),
    (
        "",
        "any",
        "What is the status of {flight_number}?",
        "{flight_number} from {origin} to {destination} is {status}, gate {gate}.",
    ),
)
COMMENTS_UP = (None, None, "Quick and clear, thanks.", "Exactly what I needed.")
COMMENTS_DOWN = (
    None,
    "It did not mention that my flight was already cancelled.",
    "Too generic, I wanted the refund link.",
    "The baggage fee quoted is outdated.",
    "It ignored my connection.",
)


def iso(moment: datetime) -> str:
    """The one timestamp format of the demo: ISO-8601, UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class DemoWorld:
    """Flights, bookings (Debezium CDC), policy documents and feedback, as Kafka messages.

    Args:
        seed: drives every choice; same seed and start give byte-identical messages.
        start: simulated time of the first event (naive means UTC).
        streams: which streams to emit (names from `STREAMS`, declared in streams.yaml).
        bad_ratio: share of extra malformed messages, headed `freshlake-demo-bad: <kind>`.
        clock: when given, event times come from it (live demo); content stays the same.
    """

    def __init__(
        self,
        *,
        seed: int,
        start: datetime,
        streams: Sequence[str] = STREAMS,
        bad_ratio: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        unknown = [s for s in streams if s not in STREAMS]
        if unknown or not streams:
            msg = f"unknown or no streams {unknown}: choose from {', '.join(STREAMS)}"
            raise ValueError(msg)
        if not 0.0 <= bad_ratio <= 1.0:
            msg = f"bad_ratio must be between 0 and 1, got {bad_ratio}"
            raise ValueError(msg)
        self.seed = seed
        self.start = _utc(start)
        self.streams = tuple(s for s in STREAMS if s in streams)  # fixed order, no duplicates
        self.bad_ratio = bad_ratio
        self.clock = clock

    def topics(self) -> dict[str, str]:
        """Stream name -> topic, for the selected streams."""
        return {name: stream_by_name(name).topic for name in self.streams}

    def messages(self) -> Iterator[DemoMessage]:
        """The endless message sequence; every call starts again from the beginning."""
        return _Run(self).messages()


class _Run:
    """The mutable state of one pass through the world."""

    def __init__(self, world: DemoWorld) -> None:
        self.world = world
        self.rng = random.Random(world.seed)
        self.bad_rng = random.Random(f"bad-{world.seed}")
        self.offset_ms = 0
        self.topics = {name: stream_by_name(name).topic for name in STREAMS}
        self.flights = [self._new_flight(i) for i in range(40)]
        self.cancelled: list[dict[str, object]] = []
        self.bookings: dict[str, dict[str, object]] = {}
        self.booking_seq = self.booking_events = 0
        self.txid, self.lsn = 7400, 24_023_128
        self.policies: dict[str, dict[str, object]] = {}
        self.revisions: dict[str, int] = {}
        self.removed: list[str] = []
        self.policy_events = self.feedback_seq = 0

    # --- time and envelopes ---

    def now(self) -> datetime:
        if self.world.clock is not None:
            return _utc(self.world.clock())
        return self.world.start + timedelta(milliseconds=self.offset_ms)

    def msg(
        self,
        stream: str,
        key: str | bytes | None,
        value: object,
        *,
        at: datetime,
        bad: str | None = None,
    ) -> DemoMessage:
        raw_key = key.encode() if isinstance(key, str) else key
        raw = value if value is None or isinstance(value, bytes) else _dumps(value)
        headers = ((BAD_HEADER, bad.encode()),) if bad else ()
        return DemoMessage(
            topic=self.topics[stream],
            key=raw_key,
            value=raw,
            headers=headers,
            timestamp_ms=epoch_ms(at),
        )

    def messages(self) -> Iterator[DemoMessage]:
        world, rng = self.world, self.rng
        if "policies" in world.streams:
            for suffix in POLICIES:
                self.offset_ms += rng.randint(20, 400)
                yield from self.publish_policy(f"policy-{suffix}", revision=1)
        weights = [_WEIGHTS[s] for s in world.streams]
        while True:
            if world.bad_ratio and self.bad_rng.random() < world.bad_ratio:
                yield self.bad_message()  # extra: world state and good content are untouched
                continue
            self.offset_ms += rng.randint(50, 2500)
            stream = rng.choices(world.streams, weights)[0]
            yield from getattr(self, f"next_{stream}")()

    # --- flights ---

    def _new_flight(self, i: int, *, after: dict[str, object] | None = None) -> dict[str, object]:
        rng = self.rng
        if after is None:  # a new route; every 5th flies to New York
            code = rng.choice(sorted(AIRLINES))
            name, hubs = AIRLINES[code]
            origin = rng.choice([h for h in hubs if h not in NEW_YORK])
            if i % 5 == 0:
                pool = NEW_YORK
            elif code in ("BA", "AF"):
                pool = US_AIRPORTS
            else:
                pool = (*US_AIRPORTS, "LHR", "CDG")
            destination = rng.choice([a for a in pool if a != origin])
            number = f"{code}{100 + 37 * i + rng.randint(0, 30)}"
            departs = self.world.start.replace(second=0, microsecond=0) + timedelta(
                minutes=15 * rng.randint(4, 48)
            )
        else:  # the same flight number, next day
            code, name = str(after["flight_number"])[:2], str(after["airline"])
            origin, destination = str(after["origin"]), str(after["destination"])
            number = str(after["flight_number"])
            departs = datetime.fromisoformat(str(after["scheduled_departure"])) + timedelta(days=1)
        steps = ["delayed"] * rng.choice((0, 0, 0, 1, 1, 2))
        if rng.random() < 0.25:
            steps.append("gate_change")
        rng.shuffle(steps)
        cancel_p = 0.4 if destination in NEW_YORK else 0.08
        if rng.random() < cancel_p or (i == 0 and after is None):  # one NY cancellation for sure
            steps.append("cancelled")
        else:
            steps += ["boarding", "departed", "arrived"]
        return {
            "record": {
                "flight_id": f"{number}-{departs.date().isoformat()}",
                "flight_number": number,
                "airline": name,
                "origin": origin,
                "origin_city": CITIES.get(origin),
                "destination": destination,
                "destination_city": CITIES.get(destination),
                "status": "scheduled",
                "scheduled_departure": iso(departs),
                "estimated_departure": iso(departs),
                "gate": self._gate(),
                "delay_minutes": 0,
                "reason": None,
                "event_time": None,
                "version": 0,
            },
            "steps": ["scheduled", *steps],
            "slot": i,
        }

    def _gate(self) -> str:
        return f"{self.rng.choice('ABCDE')}{self.rng.randint(1, 48)}"

    def next_flights(self) -> Iterator[DemoMessage]:
        flight = self.rng.choice(self.flights)
        record, status = flight["record"], flight["steps"].pop(0)
        scheduled = datetime.fromisoformat(record["scheduled_departure"])
        if status == "delayed":
            record["delay_minutes"] += self.rng.choice((15, 20, 30, 45, 60, 90, 120))
            record["reason"] = self.rng.choice(DELAY_REASONS)
            record["estimated_departure"] = iso(scheduled + timedelta(minutes=record["delay_minutes"]))
        elif status == "gate_change":
            record["gate"] = self._gate()
        elif status == "cancelled":
            ny = record["destination"] in NEW_YORK
            record["reason"] = "winter storm in the New York area" if ny else self.rng.choice(CANCEL_REASONS)
            record["estimated_departure"] = None
        at = self.now()
        record.update(status=status, event_time=iso(at), version=record["version"] + 1)
        yield self.msg("flights", record["flight_id"], record, at=at)
        if not flight["steps"]:
            if status == "cancelled":
                self.cancelled = [*self.cancelled[-9:], dict(record)]
            self.flights[flight["slot"]] = self._new_flight(flight["slot"], after=record)

    # --- bookings (Debezium) ---

    def next_bookings(self) -> Iterator[DemoMessage]:
        rng, at = self.rng, self.now()
        self.booking_events += 1
        snapshot = self.booking_events <= 6
        pick = rng.random()
        if snapshot or len(self.bookings) < 5 or pick < 0.4:
            op, before, after = ("r" if snapshot else "c"), None, self._new_booking(at)
        elif pick < 0.85:
            before = rng.choice(list(self.bookings.values()))
            after = self._change_booking(before, at)
            op = "u"
        else:
            op, before, after = "d", rng.choice(list(self.bookings.values())), None
        row = after or before
        key = _dumps({"booking_id": row["booking_id"]})
        if after is None:
            del self.bookings[row["booking_id"]]
        else:
            self.bookings[row["booking_id"]] = after
        yield self.msg("bookings", key, self._envelope(op, before, after, at, snapshot), at=at)
        if op == "d":
            yield self.msg("bookings", key, None, at=at)  # Debezium's tombstone for compaction

    def _new_booking(self, at: datetime) -> dict[str, object]:
        rng = self.rng
        self.booking_seq += 1
        first, last = rng.choice(FIRST), rng.choice(LAST)
        return {
            "booking_id": f"BK{self.booking_seq:06d}",
            "passenger_name": f"{first} {last}",
            "email": f"{first}.{last.replace('ü', 'ue')}{rng.randint(1, 99)}@example.com".lower(),
            "flight_id": self._flight_id(),
            "seat": self._seat(),
            "fare_class": rng.choice(FARES),
            "status": "confirmed",
            "updated_at": iso(at),
        }

    def _flight_id(self) -> str:
        """A flight that has been announced already, so bookings never point at nothing."""
        announced = [f for f in self.flights if f["record"]["version"] > 0] or self.flights
        return str(self.rng.choice(announced)["record"]["flight_id"])

    def _seat(self) -> str:
        return f"{self.rng.randint(1, 38)}{self.rng.choice('ABCDEF')}"

    def _change_booking(self, row: dict[str, object], at: datetime) -> dict[str, object]:
        change = self.rng.choice(("seat", "status", "flight"))
        new = dict(row, updated_at=iso(at))
        if change == "status" and row["status"] == "confirmed":
            new["status"] = "checked_in"
        elif change == "flight":
            new["flight_id"] = self._flight_id()
            new["status"] = "confirmed"
        else:
            new["seat"] = self._seat()
        return new

    def _envelope(
        self, op: str, before: object, after: object, at: datetime, snapshot: bool
    ) -> dict[str, object]:
        self.txid += 1
        self.lsn += self.rng.randint(200, 4000)
        source = {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "airline",
            "ts_ms": epoch_ms(at),
            "snapshot": "true" if snapshot else "false",
            "db": "airline",
            "schema": "public",
            "table": "bookings",
            "txId": self.txid,
            "lsn": self.lsn,
        }
        envelope = {
            "before": before,
            "after": after,
            "source": source,
            "op": op,
            "ts_ms": epoch_ms(at) + self.rng.randint(5, 250),
        }
        if self.rng.random() < 0.5:
            return {"schema": _DEBEZIUM_SCHEMA, "payload": envelope}
        return envelope

    # --- policies ---

    def publish_policy(self, policy_id: str, *, revision: int) -> Iterator[DemoMessage]:
        title, category, sentences = POLICIES[policy_id.removeprefix("policy-")]
        low, high = (450, 1200) if revision == 1 else (380, 700)
        at = self.now()
        record = {
            "policy_id": policy_id,
            "title": title,
            "category": category,
            "body": self._body(title, sentences, revision, at, self.rng.randint(low, high)),
            "revision": revision,
            "event_time": iso(at),
        }
        self.policies[policy_id] = record
        self.revisions[policy_id] = revision
        yield self.msg("policies", policy_id, record, at=at)

    def _body(self, title: str, sentences: tuple[str, ...], revision: int, at: datetime, words: int) -> str:
        rng = self.rng
        values = {
            "days": rng.choice((7, 14, 21, 30)),
            "hours": rng.randint(2, 5),
            "percent": rng.choice((110, 120)),
            "kg": rng.choice((23, 25)),
            "fee": rng.choice((35, 40, 75, 125, 150)),
            "amount": rng.choice((50, 75, 100)),
            "meal": rng.choice((15, 20, 25)),
            "n": rng.choice((4, 6)),
        }
        intro = (
            f"{title}. This policy applies to flights operated by United Airlines, Delta Air "
            "Lines, American Airlines, British Airways and Air France when booked through the "
            "flight assistant. It explains what you can expect and what you need to do."
        )
        if revision > 1:
            intro += (
                f" Revision {revision}, effective {at.date().isoformat()}, replaces all "
                "earlier versions of this policy."
            )
        paragraphs = [intro]
        scopes = rng.sample(SCOPES, len(SCOPES))
        while len(" ".join(paragraphs).split()) < words:
            chosen = rng.sample(sentences, min(len(sentences), rng.randint(5, 7)))
            chosen.append(rng.choice(GENERIC))
            scope = scopes[(len(paragraphs) - 1) % len(scopes)]
            paragraphs.append(" ".join([scope, *chosen]).format_map(values))
        return "\n\n".join(paragraphs)

    def next_policies(self) -> Iterator[DemoMessage]:
        self.policy_events += 1
        pick = self.rng.random()
        if self.policy_events == 2 or (pick < 0.15 and len(self.policies) > 5):
            policy_id = self.rng.choice(sorted(self.policies))
            del self.policies[policy_id]
            self.removed.append(policy_id)
            yield self.msg("policies", policy_id, None, at=self.now())  # removal = tombstone
            return
        if self.removed and pick < 0.3:
            policy_id = self.removed.pop(self.rng.randrange(len(self.removed)))
        else:
            policy_id = self.rng.choice(sorted(self.policies))
        yield from self.publish_policy(policy_id, revision=self.revisions.get(policy_id, 0) + 1)

    # --- feedback ---

    def feedback_record(self, rng: random.Random, feedback_id: str, at: datetime) -> dict[str, object]:
        """A rated question and answer; reads the world state, never changes it."""
        live = [f["record"] for f in self.flights if f["record"]["version"] > 0]
        delayed = [r for r in live if r["delay_minutes"]]
        pools = {"": [None], "cancelled": self.cancelled, "delayed": delayed, "any": live}
        suffix, needs, query, answer = rng.choice([t for t in FEEDBACK if pools[t[1]]])
        flight = rng.choice(pools[needs])
        if flight is not None:
            query, answer = query.format_map(flight), answer.format_map(flight)
        rating = "up" if rng.random() < 0.7 else "down"
        ids = [f"policy-{suffix}"] if suffix else []
        return {
            "feedback_id": feedback_id,
            "session_id": f"s-{rng.getrandbits(32):08x}",
            "query": query,
            "answer": answer,
            "rating": rating,
            "comment": rng.choice(COMMENTS_UP if rating == "up" else COMMENTS_DOWN),
            "document_ids": ids + ([flight["flight_id"]] if flight else []),
            "event_time": iso(at),
        }

    def next_feedback(self) -> Iterator[DemoMessage]:
        self.feedback_seq += 1
        at, feedback_id = self.now(), f"FB{self.feedback_seq:06d}"
        yield self.msg("feedback", feedback_id, self.feedback_record(self.rng, feedback_id, at), at=at)

    # --- bad messages ---

    def bad_message(self) -> DemoMessage:
        """A malformed message of some stream, drawn from its own rng so good content is kept."""
        rng, at = self.bad_rng, self.now()
        stream = rng.choices(self.world.streams, [_WEIGHTS[s] for s in self.world.streams])[0]
        spec = stream_by_name(stream)
        kinds = DEBEZIUM_BAD_KINDS if spec.format == "debezium" else JSON_BAD_KINDS
        kind = rng.choice(kinds)
        if stream == "flights":
            record = dict(rng.choice(self.flights)["record"], event_time=iso(at))
            record["version"] = max(record["version"], 1)
        elif stream == "policies":
            policy = self.policies.get(rng.choice(sorted(POLICIES)))
            record = dict(
                policy
                or {
                    "policy_id": "policy-draft",
                    "title": "Draft",
                    "body": "TBD",
                    "category": "draft",
                    "revision": 1,
                },
                event_time=iso(at),
            )
        elif stream == "feedback":
            record = self.feedback_record(rng, f"FBX{rng.randrange(10**6):06d}", at)
        else:
            row = (rng.choice(list(self.bookings.values())) if self.bookings else None) or {
                "booking_id": f"BKX{rng.randrange(10**6):06d}",
                "passenger_name": "Sam Kim",
                "email": "sam.kim@example.com",
                "flight_id": self.flights[0]["record"]["flight_id"],
                "seat": "12C",
                "fare_class": "economy",
                "status": "confirmed",
            }
            record = {
                "before": row,
                "after": dict(row, updated_at=iso(at)),
                "source": {
                    "version": "2.7.3.Final",
                    "connector": "postgresql",
                    "ts_ms": epoch_ms(at),
                },
                "op": "u",
                "ts_ms": epoch_ms(at),
            }
        key_value = record["after"] if stream == "bookings" else record
        key: bytes | None = (
            _dumps({"booking_id": key_value["booking_id"]})
            if stream == "bookings"
            else str(key_value[spec.key_field]).encode()
        )
        target = record["after"] if stream == "bookings" else record
        if kind == "not_json":
            good = _dumps(record)
            return self.msg(stream, key, good[: rng.randint(1, len(good) - 1)] + b"\xff\x00", at=at, bad=kind)
        if kind == "missing_required":
            target.pop(rng.choice(spec.required))
        elif kind == "wrong_type":
            field, wrong = rng.choice(_WRONG_TYPES[stream])
            target[field] = wrong
        elif kind == "missing_key":
            key = None
        else:  # bad_envelope
            if rng.random() < 0.5:
                del record["op"]
            else:
                record["op"] = "x"
        return self.msg(stream, key, record, at=at, bad=kind)


_WRONG_TYPES: dict[str, tuple[tuple[str, object], ...]] = {
    "flights": (("delay_minutes", "lots"), ("event_time", "12.5e99"), ("version", "v2")),
    "bookings": (("updated_at", "12.5e99"), ("seat", 14)),
    "policies": (("revision", "two"), ("event_time", "next tuesday"), ("body", ["not", "text"])),
    "feedback": (("document_ids", "policy-refunds"), ("event_time", "12.5e99"), ("rating", 5)),
}


def _struct(
    name: str,
    fields: list[tuple[str, str, bool, str | None]],
    field: str | None = None,
    *,
    optional: bool = True,
) -> dict[str, object]:
    out: dict[str, object] = {
        "type": "struct",
        "fields": [
            {"type": t, "optional": opt, "field": f} | ({"name": n} if n else {}) for f, t, opt, n in fields
        ],
        "optional": optional,
        "name": name,
    }
    return out | ({"field": field} if field else {})


_ROW = [
    ("booking_id", "string", False, None),
    ("passenger_name", "string", True, None),
    ("email", "string", True, None),
    ("flight_id", "string", True, None),
    ("seat", "string", True, None),
    ("fare_class", "string", True, None),
    ("status", "string", True, None),
    ("updated_at", "string", True, "io.debezium.time.ZonedTimestamp"),
]
_SOURCE = [
    ("version", "string", False, None),
    ("connector", "string", False, None),
    ("name", "string", False, None),
    ("ts_ms", "int64", False, None),
    ("snapshot", "string", True, "io.debezium.data.Enum"),
    ("db", "string", False, None),
    ("schema", "string", False, None),
    ("table", "string", False, None),
    ("txId", "int64", True, None),
    ("lsn", "int64", True, None),
]
_DEBEZIUM_SCHEMA: dict[str, object] = {
    "type": "struct",
    "optional": False,
    "name": "airline.public.bookings.Envelope",
    "version": 2,
    "fields": [
        _struct("airline.public.bookings.Value", _ROW, "before"),
        _struct("airline.public.bookings.Value", _ROW, "after"),
        _struct("io.debezium.connector.postgresql.Source", _SOURCE, "source", optional=False),
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
    ],
}
