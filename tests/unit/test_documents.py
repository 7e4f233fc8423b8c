from __future__ import annotations

from datetime import UTC, datetime

from freshlake.documents import render, template_fields
from tests.demo_streams import demo_stream

FLIGHT = {
    "flight_id": "UA123-2026-11-21",
    "origin_city": "New York",
    "flight_number": "UA123",
    "airline": "United",
    "origin": "JFK",
    "destination": "SFO",
    "status": "delayed",
    "delay_minutes": 95,
    "reason": "crew",
    "gate": "B7",
    "scheduled_departure": datetime(2026, 11, 21, 18, 40, tzinfo=UTC),
    "estimated_departure": None,
}


def test_flight_reads_naturally_and_drops_empty_facts() -> None:
    text = render(demo_stream("flights").document, row=FLIGHT)
    assert text == (
        "Flight UA123 (United) from New York (JFK) to (SFO) is delayed, delayed 95 minutes because of crew, "
        "gate B7, scheduled to depart 2026-11-21 18:40 UTC."
    )
    on_time = render(
        demo_stream("flights").document,
        row={**FLIGHT, "status": "boarding", "delay_minutes": 0, "reason": None},
    )
    assert "delayed" not in on_time and "because" not in on_time and "boarding" in on_time


def test_booking_is_enriched_with_its_flight() -> None:
    booking = {
        "booking_id": "BK1",
        "passenger_name": "Ada L",
        "status": "confirmed",
        "flight_id": "UA123-2026-11-21",
        "seat": "12A",
        "fare_class": "economy",
    }
    spec = demo_stream("bookings").document
    text = render(spec, row=booking, joined={**FLIGHT, "status": "cancelled", "delay_minutes": 0})
    assert "Flight UA123 from JFK to SFO is cancelled" in text and "seat 12A" in text
    assert "Flight UA123" not in render(spec, row=booking, joined=None)  # no flight known yet


def test_template_fields() -> None:
    assert "flight.status" in template_fields(demo_stream("bookings").document.template)
