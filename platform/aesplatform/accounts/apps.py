from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "aesplatform.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"
