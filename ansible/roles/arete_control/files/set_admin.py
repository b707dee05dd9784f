# Run by the arete_control role as the arete user: user "admin" (role admin) gets the
# password read from stdin. Prints "unchanged" when it already has it. Only the hash is
# stored (DATA/web/users.db); the password is never written anywhere.
import sys
from pathlib import Path

from web_api.auth.users import UserStore

password = sys.stdin.read().strip()
store = UserStore(Path(sys.argv[1]) / "web" / "users.db")
try:
    user = store.get_user("admin")
    if user is None:
        store.add_user("admin", "admin", password)
        print("created admin")
    elif user.role.value != "admin":
        sys.exit("error: a user 'admin' exists without the admin role; remove or promote it")
    elif store.verify_password("admin", password) is None:
        store.set_password("admin", password)
        print("changed admin's password")
    else:
        print("unchanged")
finally:
    store.close()
