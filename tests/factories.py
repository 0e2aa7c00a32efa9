"""factory_boy factories for the domain. Numbers are valid US 555-01xx numbers unless said."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from proxy.models import Conversation, Participant, Service
from virtual_numbers.models import VirtualNumber


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Marketplace {n}")
    slug = factory.Sequence(lambda n: f"market-{n}")
    default_country = "US"


class VirtualNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VirtualNumber

    # +1 201 555 01xx style numbers are valid; pool numbers use other exchanges to stay apart.
    number = factory.Sequence(lambda n: f"1201555{n % 10000:04d}")
    country = "US"
    service = factory.SubFactory(ServiceFactory)


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    service = factory.SubFactory(ServiceFactory)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))


class ParticipantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Participant

    conversation = factory.SubFactory(ConversationFactory)
    service = factory.SelfAttribute("conversation.service")
    real_number = factory.Sequence(lambda n: f"1201555{(n % 100):04d}")
    country = "US"
    proxy_number = factory.SubFactory(VirtualNumberFactory, service=factory.SelfAttribute("..service"))
