# expect: credential_read
# action: alert
# about: reads cloud credentials (~/.aws/credentials)
head -c 200 ~/.aws/credentials > /dev/null
