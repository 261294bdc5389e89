"""The limits of a campaign's settings and of a submit, in one place: the model's validators, the services, the
API's serializers and the pages' forms all read them from here."""

REDUNDANCY_MIN, REDUNDANCY_MAX, REDUNDANCY_DEFAULT = 1, 50, 3  # distinct annotators per image
GOLD_RATIO_MIN, GOLD_RATIO_MAX, GOLD_RATIO_DEFAULT = 0.0, 0.5, 0.0
LEASE_SECONDS_MIN, LEASE_SECONDS_MAX, LEASE_SECONDS_DEFAULT = 30, 86_400, 900
CAMPAIGN_NAME_MAX_LENGTH = 200
CAMPAIGN_IMAGES_MAX = 5_000_000  # image ids in one create request
HELD_MAX = 10  # assignment ids a next-task request may list as already shown or preloaded
TIME_SPENT_MS_MAX = 86_400_000  # a day
UI_VERSION_MAX_LENGTH = 40  # the client's own version string, stored with each annotation
REVIEW_REASON_MAX_LENGTH = 500  # why a rating was corrected or rejected
