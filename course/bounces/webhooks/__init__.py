"""Bounces and complaints reported by a sending provider's webhook (listmonk's bounce/webhooks, one
module per provider): each module verifies a request and reads its events into ProviderEvents,
pure but for the SES certificate, which is fetched through an injectable function. The web route
(course/web/public/webhooks.py) stores them (store.py) and answers at once; a beat task applies
them through the one recording function (course/bounces/record.py).

events.py: the shapes every provider shares; providers.py: the registry.
A provider is on when its secret is set (WebhookOptions); a request for one that is off is a 404.
"""
