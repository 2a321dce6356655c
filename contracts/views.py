"""The serving store's layout: the Redis keys the stream processor writes and the notifier reads.

This is a contract between two services like the topics are, so it lives here and neither side
imports the other. Every key starts with the namespace (``SOCIALPROOF_REDIS_NAMESPACE``, default
``sp``) so that a rebuild can fill a fresh namespace beside the live one. On a Redis Cluster (and
in any namespace with more than one shard) "the namespace" below is a *shard's prefix*
``{ns}:{<tag>}``: :mod:`contracts.layout` says which shard holds which key (product facts in
their product's shard, user facts copied into every shard, referrals and promotions in their
own shard) and how readers assemble across shards. With one shard, the default on a single
Redis, the keys are exactly as written here. Ids may contain ``:``
(see ``contracts.events.Identifier``), so a key that carries two ids joins them with ``|``, a
character ids never contain.

Facts (what events said; written idempotently, newest-wins by ``(occurred_at, event_id)``):

- ``{ns}:order:{order_id}``               hash  ``user``, ``ts`` (event ms), ``eid`` (the
                                                purchase's event id), ``q:{product}`` qty,
                                                ``cancelled`` once the order is cancelled,
                                                ``refunded`` once any refund of it arrived,
                                                ``vis`` the purchase's visitor id (if any)
- ``{ns}:refund:{order_id}|{product}``    hash  refund_id -> refunded quantity
- ``{ns}:review:{product}|{user}``        hash  ``live`` 0/1, ``rating``, ``ts``, ``eid``,
                                                ``vf`` 0/1: the live review is counted as
                                                verified (its author has a kept purchase of the
                                                product; kept in step as purchases, refunds,
                                                cancellations and erasures arrive; 0 when not
                                                live)
- ``{ns}:share:{share_id}``               hash  ``p`` product, ``u`` user, ``ch`` channel, ``ts``,
                                                ``eid`` (the share's event id), ``lk`` its link
                                                token if it has one
- ``{ns}:fr:{a}|{b}``                     hash  friendship a<b: ``on`` 0/1, ``ts``, ``eid``
- ``{ns}:consent:{user}``                 hash  ``s`` share_purchases_with_friends 0/1,
                                                ``f`` show_in_activity_feed 0/1,
                                                ``q`` notify_on_questions 0/1, ``ts``, ``eid``
                                                (absent = 0/0/0: privacy by default)
- ``{ns}:name:{user}``                    hash  ``n`` first name, ``ts``, ``eid``
- ``{ns}:question:{question_id}``         hash  ``p`` product, ``u`` asker, ``ts``, ``eid``;
                                                ``hidden`` 0/1 with ``hts``/``heid`` (moderation,
                                                newest wins; absent = shown); ``c`` what it counts
                                                in ``qa:{product}`` now (bits: 1 visible, 2
                                                answered, 4 answered by buyers; absent = 0).
                                                Visible = asked and not hidden
- ``{ns}:answer:{answer_id}``             hash  ``q`` question, ``p`` product, ``u`` author,
                                                ``ts``, ``eid``; ``hidden`` 0/1 with
                                                ``hts``/``heid`` (moderation, newest wins; absent
                                                = shown); ``accepted`` 1 once accepted (by the
                                                asker or the shop; absent = 0); ``helpful``
                                                helpful votes (absent = 0)
- ``{ns}:vote:{answer_id}|{voter}``       hash  ``h`` helpful 0/1, ``ts``, ``eid`` (one vote per
                                                user and answer, newest wins)
- ``{ns}:erased``                         set   erased users: their events are ignored for ever
- ``{ns}:user:{user}:{what}``             sets  what a user touched, for erasure and
                                                announcements: ``products`` (bought), ``orders``,
                                                ``refunds`` (``order|product``),
                                                ``reviews`` (products), ``shares`` (share ids),
                                                ``fr`` (users ever befriended), ``questions``
                                                (question ids asked), ``answers`` (answer ids),
                                                ``votes`` (answer ids voted on)

Erasure deletes the user's facts and takes them out of every view. Of an erased user's question
or answer only what others said stays (the shop's ``hidden``/``accepted``, other users'
``helpful`` votes), which names no one; answers by others to an erased user's question stay theirs.

Views (derived from the facts inside the same atomic script):

- ``{ns}:ub:{product}|{user}``            hash  order_id -> event ms, the user's kept orders
- ``{ns}:buyers:{product}``               zset  user scored by their latest kept purchase (ms);
                                                bought windows are ``ZCOUNT now-window +inf``
- ``{ns}:cbuyers:{product}``              set   buyers who share purchases with friends
- ``{ns}:friends:{user}``                 set   the user's friends (symmetric)
- ``{ns}:fanout``                         set   viewers whose friends_bought is fanned out on
                                                write: ``FRIENDS_FANOUT_AT`` friendships or more
                                                on record (``user:{viewer}:fr``)
- ``{ns}:fb:{viewer}|{product}``          zset  for a viewer in ``fanout``: exactly
                                                ``friends:{viewer}`` ∩ ``cbuyers:{product}``,
                                                every score 0 (so members list in id order)
- ``{ns}:user:{user}:fo``                 set   the viewers in ``fanout`` the user is a friend of
- ``{ns}:reviews:{product}``              hash  ``count``, ``sum``, ``h1``..``h5``; their
                                                verified subset ``vcount``, ``vsum``,
                                                ``vh1``..``vh5`` (reviews whose ``vf`` is 1)
- ``{ns}:reviewers:{product}``            set   users with a review fact of the product
                                                (``review:{product}|{user}``, live or deleted);
                                                an erasure takes the user out. Stores written
                                                before it existed lack it until a rebuild
- ``{ns}:shares:{product}``               hash  ``total``, ``ch:{channel}``
- ``{ns}:sharets:{product}``              zset  share_id scored by event ms (1 h / 24 h windows)
- ``{ns}:trend:{hour}``                   zset  product -> weighted activity in that event-time
                                                hour (hour = ms // 3,600,000)
- ``{ns}:feed:{product}``                 zset  ``b|user|order``, ``r|user``, ``s|user|share``
                                                scored by event ms, newest ``FEED_KEEP`` kept;
                                                consent, names and erasure are applied at read
- ``{ns}:qa:{product}``                   hash  ``questions`` (visible questions),
                                                ``answered`` (… with a visible answer),
                                                ``answered_by_buyers`` (… with a member in
                                                ``qbuyans``); absent = 0
- ``{ns}:questions:{product}``            zset  visible question ids scored by ask time (ms)
- ``{ns}:qans:{question_id}``             set   its shown answers (posted, author not erased,
                                                not hidden)
- ``{ns}:qbuyans:{question_id}``          set   its shown answers whose author is a verified
                                                buyer of the answer's product now (``ub`` exists):
                                                a refund, cancellation or erasure takes an answer
                                                out, a later purchase puts it in
- ``{ns}:qnotify:{product}``              zset  kept buyers of the product who allow question
                                                notes (consent ``q``), scored by their earliest
                                                kept purchase (ms)
- ``{ns}:notecap:{user}:{YYYYMMDD}``      zset  the user's *candidates* of one UTC day (by ask
                                                time): visible questions about a product they
                                                are in ``qnotify`` of, asked by someone else at
                                                or after that score; scored by ask time, expire
                                                ``NOTECAP_TTL_S`` after their last change
- ``{ns}:notes:{user}``                   zset  question ids the user is notified of, scored by
                                                ask time (ms): of each day's candidates the first
                                                ``QUESTION_NOTES_PER_DAY`` (by ask time, then id),
                                                newest ``NOTES_KEEP`` kept. A candidate that goes
                                                (hidden, asker erased, refund, consent withdrawn)
                                                takes its note away and lets the day's next one in,
                                                so the notes depend on the facts only, not on
                                                their order (within ``NOTECAP_TTL_S``)

Referrals and promotions (``services/counters/referrals.lua``, ``promotions.lua``; the reasoning in
``services/counters/store.py``). A purchase is *referred* when it carries a link token;
the *credit* for a buyer's purchases of a product goes to the sharer of their earliest kept
referred purchase of it (first touch, by ``(event ms, order id)``), never to the buyer's own
link (self-referral), and moves to the next one when that purchase is refunded or cancelled:

- ``{ns}:link:{token}``                   hash  ``s`` share id, ``u`` sharer, ``p`` product,
                                                ``ts``: a share's link (``ProductShared``)
- ``{ns}:linkwait:{token}``               set   referred order ids whose link is not known yet
                                                (never shared, or its sharer was erased)
- ``{ns}:lo:{token}``                     set   referred order ids whose link is known (to take
                                                them out when the sharer is erased)
- ``{ns}:ro:{order_id}``                  hash  a referred purchase: ``u`` buyer, ``t`` token,
                                                ``ts``, ``eid``, ``q:{product}`` quantities
- ``{ns}:rb:{product}|{buyer}``           zset  the buyer's kept referred orders of the product
                                                whose link is known and not their own, scored by
                                                event ms (ties: order id); the first is credited
- ``{ns}:credit:{product}|{buyer}``       hash  ``o`` credited order, ``s`` sharer, ``ts``: what
                                                the first member of ``rb`` says now
- ``{ns}:via:{product}``                  zset  credited buyers scored by their credited
                                                purchase (ms): "bought through friends' shares"
                                                windows are ``ZCOUNT now-window +inf``
- ``{ns}:sharers:{product}``              zset  sharer -> credited buyers of the product (the
                                                shop's top sharers; service token only)
- ``{ns}:credits:{sharer}``               zset  ``{product}|{buyer}`` credited to the sharer,
                                                scored by the credited purchase (ms)
- ``{ns}:promo:{promotion_id}``           hash  the newest definition: ``p`` product or ``cat``
                                                category, ``title``, ``goal``, ``from``/``to``
                                                (ms; ``to`` = min(ends_at, ended)), ``ends``
                                                (ends_at, ms), ``cap``, ``sk``/``sv``/``sc``
                                                sharer reward kind, value,
                                                currency, ``bk``/``bv``/``bc`` buyer reward,
                                                ``ts``, ``eid``; ``ended`` (ms) once ended
- ``{ns}:promos:{product}``               set   promotions scoped to the product
- ``{ns}:catpromos:{category}``           set   promotions scoped to a category
- ``{ns}:pcat:{product}``                 string the product's category (catalogue events)
- ``{ns}:pcatv:{product}``                hash  ``ts``, ``eid`` of the newest
                                                ``product.upserted`` (newest wins; a deletion
                                                leaves the category)
- ``{ns}:catp:{category}``                set   products of the category (``pcat``)
- ``{ns}:promotions``                     set   every promotion defined
- ``{ns}:promocats``                      set   categories with a promotion (``catpromos``)
- ``{ns}:promoend:{promotion_id}``        string an end (ms) that arrived before the definition
- ``{ns}:pc:{promotion_id}``              hash  sharer -> distinct buyers credited to them in
                                                the promotion's scope and period (its progress)
- ``{ns}:pq:{promotion_id}``              zset  sharers at or past the goal, scored by when they
                                                reached it (ms of the goal-th buyer)
- ``{ns}:pe:{promotion_id}``              set   sharers whose reward is ``earned``
- ``{ns}:pr:{promotion_id}``              set   sharers whose reward is ``redeemed`` (they take
                                                places under ``cap`` first)
- ``{ns}:pb:{promotion_id}``              set   buyers whose buyer reward is ``earned``
- ``{ns}:reward:{reward_id}``             hash  ``P`` promotion, ``role`` sharer/buyer, ``u``,
                                                ``coupon``, ``status`` earned/withdrawn/redeemed,
                                                ``seq`` transitions this namespace made (each
                                                emitted by the live one), ``buyers`` (at the last
                                                transition), ``kind``/``value``/``currency`` the
                                                reward it was last earned with. A reward earned
                                                and withdrawn again exists, one never earned does
                                                not: which rewards hold (earned, redeemed) does
                                                not depend on the order events arrived in, their
                                                history does
- ``{ns}:rewards:{user}``                 set   the user's reward ids (withdrawn ones too)
- ``{ns}:coupon:{code}``                  string its reward id
- ``{ns}:redeemed:{code}``                string the order that redeemed it (purchase with
                                                ``coupon``; the smallest order id): the reward
                                                stays ``redeemed``
- ``{ns}:redeemwait``                     hash  code -> user: redemptions whose reward is not
                                                known yet (its promotion's definition has not
                                                arrived; or no reward has that code)
- ``{ns}:user:{user}:redeemed``           set   coupon codes the user redeemed (for erasure;
                                                erasure also reads ``user:{user}:orders`` and
                                                ``shares`` for their referred orders and links)
- ``{base}:rewards:outbox``               stream reward transitions to emit, written by the
                                                script for the live namespace only (``base`` is
                                                ``SOCIALPROOF_REDIS_NAMESPACE``, the same across
                                                rebuilds); fields ``type`` earned/withdrawn,
                                                ``reward``, ``P``, ``role``, ``u``, ``coupon``,
                                                ``kind``, ``value``, ``currency``, ``buyers``,
                                                ``reason``, ``ts`` (event ms), ``seq`` (the
                                                reward's emission number in ``rewards:seq``)
- ``{base}:rewards:seq``                  hash  reward id -> entries emitted for it, across
                                                namespaces, so that an event id (reward id and
                                                seq) is never reused after a rebuild's switch
- ``{base}:rewards:relay``                hash  ``id`` the last outbox entry published, ``offset``
                                                the reward topic's end after it (the relay's
                                                checkpoint, ``services/counters/relay.py``)

Badge experiments (issue #18; ``services/counters/experiments.lua``, in the same script as the
counters, so a purchase, refund, cancellation or erasure moves experiment figures in the same
atomic call; the reasoning in ``services/counters/store.py``). Interactions (``badge.viewed``,
``badge.clicked``, ``badge.dismissed``) carry their experiment ``E`` and variant ``V``; those
without an experiment (or without a variant) count under the pseudo-experiment ``_`` with variant
``badge`` (the shop's plain badge funnel). An *identity* ``I`` is ``v:{visitor_id}`` or
``u:{user_id}`` (a viewer token's viewer on an interaction; the buyer on a purchase). A kept purchase line ``(o, p)`` is
*attributed* in ``E`` when one of the purchase's identities (its buyer, its ``visitor_id``) has a
``badge.viewed`` of ``p`` in ``E`` at or before the purchase and no longer before it than the
interaction's window; the latest such impression (by ``(ms, member)``) names the variant and the
visitor credited. Everything is a function of the facts, so duplicates, replays and any order of
arrival give the same figures:

- ``{ns}:xim:{I}|{product}``              zset  impressions of the product by the identity:
                                                ``{E}|{V}|{visitor}|{window s}|{event id}``
                                                scored by event ms (attribution looks back here)
- ``{ns}:xvi:{E}|{visitor}``              zset  the visitor's impressions in E,
                                                ``{V}|{event id}`` by ms (a new member counts an
                                                impression; the variant lets an erasure
                                                recompute the visitor's first one per variant)
- ``{ns}:xvc:{E}|{visitor}``              set   the visitor's click and dismissal event ids in E
- ``{ns}:xvo:{visitor}|{product}``        hash  order id -> event ms: purchases that carried the
                                                visitor id (a late impression finds them here;
                                                the buyer's are ``ub:{product}|{user}``)
- ``{ns}:xa:{order}|{product}``           hash  E -> ``{V}|{visitor}``: where the kept line is
                                                attributed now
- ``{ns}:xr:{E}``                         hash  ``{V}|{product}|imp``, ``…|clk``, ``…|dis``,
                                                ``…|pur`` (attributed kept lines): the funnel per
                                                variant and product; totals are sums at read
- ``{ns}:xvf:{E}|{V}``                    zset  visitors -> their first impression (ms): the
                                                variant's visitors (``ZCARD``; over time ``ZCOUNT``)
- ``{ns}:xvl:{E}|{visitor}``              zset  ``{order}|{product}`` attributed to the visitor,
                                                by purchase ms
- ``{ns}:xcv:{E}|{V}``                    zset  converted visitors -> their first attributed
                                                purchase (ms): conversions = ``ZCARD``
- ``{ns}:xu:{user}``                      set   the user's interactions as viewer
                                                (``{kind}|{E}|{V}|{visitor}|{product}|{window
                                                s}|{event id}|{ms}``, kind ``v`` viewed, ``c``
                                                clicked, ``d`` dismissed): erasure takes each out
- ``{ns}:experiments``                    set   every experiment with interactions (``_`` too)

Announcements: the processor publishes a JSON list of changed product ids on the pub/sub
channel ``{ns}:changes`` once per batch (coalesced), and the notifier pushes fresh state; and
the users whose notes changed, as a JSON list, on ``{ns}:user-changes`` (also once per batch).
"""

from __future__ import annotations

#: rolling windows of distinct buyers, by event time: label -> milliseconds
BOUGHT_WINDOWS_MS: dict[str, int] = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000}
#: rolling windows of shares, by event time
SHARE_WINDOWS_MS: dict[str, int] = {"1h": 3_600_000, "24h": 86_400_000}

HOUR_MS = 3_600_000
#: trending: activity weight per kind, and how many hourly buckets count (the newest weighs
#: TRENDING_HOURS, the oldest 1: score = sum of kind weight x (TRENDING_HOURS - age in hours))
TRENDING_WEIGHTS: dict[str, int] = {"bought": 3, "reviewed": 2, "shared": 1}
TRENDING_HOURS = 24
#: activity feed: entries kept per product (the read filters consent, so keep more than shown)
FEED_KEEP = 500
#: friends_bought is fanned out on write for viewers with at least this many friendships on
#: record; below it the read intersects (services/counters/store.py says why)
FRIENDS_FANOUT_AT = 2000
SHARE_CHANNELS = ("link", "facebook", "x", "whatsapp", "email", "other")
#: question notes: at most this many per user and UTC day (of the question's event time) …
QUESTION_NOTES_PER_DAY = 5
#: … and the newest this many kept per user (``{ns}:notes:{user}``)
NOTES_KEEP = 50
DAY_MS = 86_400_000
#: a user's day of note candidates (``{ns}:notecap:{user}:{YYYYMMDD}``) is kept this long after
#: its last change: late changes within it move notes exactly, older days are forgotten
NOTECAP_TTL_S = 3 * 86_400
#: interactions without an experiment count under this pseudo-experiment and variant
NO_EXPERIMENT = "_"
NO_EXPERIMENT_VARIANT = "badge"
#: attribution window of interactions without an experiment, hours
DEFAULT_ATTRIBUTION_WINDOW_H = 24


class Keys:
    """Key builders for one namespace."""

    def __init__(self, namespace: str = "sp") -> None:
        self.ns = namespace

    def order(self, order_id: str) -> str:
        return f"{self.ns}:order:{order_id}"

    def refund(self, order_id: str, product_id: str) -> str:
        return f"{self.ns}:refund:{order_id}|{product_id}"

    def user_buys(self, product_id: str, user_id: str) -> str:
        return f"{self.ns}:ub:{product_id}|{user_id}"

    def buyers(self, product_id: str) -> str:
        return f"{self.ns}:buyers:{product_id}"

    def consenting_buyers(self, product_id: str) -> str:
        return f"{self.ns}:cbuyers:{product_id}"

    def friends(self, user_id: str) -> str:
        return f"{self.ns}:friends:{user_id}"

    @property
    def fanout(self) -> str:
        return f"{self.ns}:fanout"

    def friends_who_bought(self, viewer_id: str, product_id: str) -> str:
        return f"{self.ns}:fb:{viewer_id}|{product_id}"

    def consent(self, user_id: str) -> str:
        return f"{self.ns}:consent:{user_id}"

    def name(self, user_id: str) -> str:
        return f"{self.ns}:name:{user_id}"

    def review(self, product_id: str, user_id: str) -> str:
        return f"{self.ns}:review:{product_id}|{user_id}"

    def reviews(self, product_id: str) -> str:
        return f"{self.ns}:reviews:{product_id}"

    def reviewers(self, product_id: str) -> str:
        return f"{self.ns}:reviewers:{product_id}"

    def shares(self, product_id: str) -> str:
        return f"{self.ns}:shares:{product_id}"

    def share_times(self, product_id: str) -> str:
        return f"{self.ns}:sharets:{product_id}"

    def trend_bucket(self, hour: int) -> str:
        return f"{self.ns}:trend:{hour}"

    def feed(self, product_id: str) -> str:
        return f"{self.ns}:feed:{product_id}"

    def user_products(self, user_id: str) -> str:
        return f"{self.ns}:user:{user_id}:products"

    def question(self, question_id: str) -> str:
        return f"{self.ns}:question:{question_id}"

    def answer(self, answer_id: str) -> str:
        return f"{self.ns}:answer:{answer_id}"

    def vote(self, answer_id: str, user_id: str) -> str:
        return f"{self.ns}:vote:{answer_id}|{user_id}"

    def qa(self, product_id: str) -> str:
        return f"{self.ns}:qa:{product_id}"

    def questions(self, product_id: str) -> str:
        return f"{self.ns}:questions:{product_id}"

    def question_answers(self, question_id: str) -> str:
        return f"{self.ns}:qans:{question_id}"

    def question_buyer_answers(self, question_id: str) -> str:
        return f"{self.ns}:qbuyans:{question_id}"

    def notes(self, user_id: str) -> str:
        return f"{self.ns}:notes:{user_id}"

    def link(self, token: str) -> str:
        return f"{self.ns}:link:{token}"

    def credit(self, product_id: str, buyer_id: str) -> str:
        return f"{self.ns}:credit:{product_id}|{buyer_id}"

    def bought_via_shares(self, product_id: str) -> str:
        return f"{self.ns}:via:{product_id}"

    def sharers(self, product_id: str) -> str:
        return f"{self.ns}:sharers:{product_id}"

    def credits(self, sharer_id: str) -> str:
        return f"{self.ns}:credits:{sharer_id}"

    def promotion(self, promotion_id: str) -> str:
        return f"{self.ns}:promo:{promotion_id}"

    def product_promotions(self, product_id: str) -> str:
        return f"{self.ns}:promos:{product_id}"

    def category_promotions(self, category: str) -> str:
        return f"{self.ns}:catpromos:{category}"

    def experiment_funnel(self, experiment_id: str) -> str:
        return f"{self.ns}:xr:{experiment_id}"

    def experiment_visitors(self, experiment_id: str, variant: str) -> str:
        return f"{self.ns}:xvf:{experiment_id}|{variant}"

    def experiment_converted(self, experiment_id: str, variant: str) -> str:
        return f"{self.ns}:xcv:{experiment_id}|{variant}"

    def attribution(self, order_id: str, product_id: str) -> str:
        return f"{self.ns}:xa:{order_id}|{product_id}"

    @property
    def experiments(self) -> str:
        return f"{self.ns}:experiments"

    def product_category(self, product_id: str) -> str:
        return f"{self.ns}:pcat:{product_id}"

    def promotion_progress(self, promotion_id: str) -> str:
        return f"{self.ns}:pc:{promotion_id}"

    def promotion_qualified(self, promotion_id: str) -> str:
        return f"{self.ns}:pq:{promotion_id}"

    def reward(self, reward_id: str) -> str:
        return f"{self.ns}:reward:{reward_id}"

    def user_rewards(self, user_id: str) -> str:
        return f"{self.ns}:rewards:{user_id}"

    def coupon(self, code: str) -> str:
        return f"{self.ns}:coupon:{code}"

    @property
    def rewards_outbox(self) -> str:
        """Only meaningful on the base namespace's Keys (the same across rebuilds)."""
        return f"{self.ns}:rewards:outbox"

    @property
    def rewards_relay(self) -> str:
        return f"{self.ns}:rewards:relay"

    @property
    def erased(self) -> str:
        return f"{self.ns}:erased"

    @property
    def changes_channel(self) -> str:
        return f"{self.ns}:changes"

    @property
    def user_changes_channel(self) -> str:
        return f"{self.ns}:user-changes"
