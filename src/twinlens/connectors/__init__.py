"""Helpdesk connectors: a ticket comes in by the helpdesk's own webhook, its text and photo
are fetched from the helpdesk's REST API, and the decision goes back onto the ticket.

This package holds what each helpdesk says and expects (signatures, payloads, request and
response shapes) and nothing else: it sits at the services level, speaks HTTP only through
the `Transport` it is handed (services/connectors_http.py: the SSRF guard, the helpdesk's
hosts, retries, the per-ticket call log), and never touches the database. Connectors are
found through the `twinlens.connectors` entry-point group (contract.py), so another
helpdesk can be added as a package; Zendesk and Freshdesk are built in.
"""
